"""The `enriched` mapper: enriched messages of any device type, plus device metadata."""
from __future__ import annotations

from sinkframe.mapping.base import Column, KafkaRecord, MappedRow, Mapper, Target
from sinkframe.mapping.coerce import as_text
from sinkframe.mapping.common import (
    DEVICE_METADATA_TARGET,
    SOURCE_COLUMNS,
    device_id_of,
    device_metadata_row,
    jsonb,
    message_object,
    message_time,
    optional_object,
)


class EnrichedMapper(Mapper):
    """One iot_enriched_data row per message, and an upsert of the device's metadata.

    Message (a JSON object):
      device_id    required; a non-blank string (kept verbatim) or an integer (stored as text)
      timestamp    optional; ISO-8601 string (no offset = UTC) or epoch s/ms/us number;
                   absent or null -> the Kafka record timestamp
      device_type  optional; text
      payload      optional; a JSON object, stored as jsonb
      metadata     optional; a JSON object, stored whole as jsonb; its keys manufacturer,
                   model, firmware_version, location (text; an object or array is stored
                   as its JSON text) and capabilities (any JSON) also go to device_metadata
      fdi_package  optional; a JSON object, stored whole as jsonb; its package_id and
                   version also go to device_metadata
    A message with a device_type, metadata or fdi_package also yields a device_metadata
    row (first_seen = last_seen = message time). The upsert never lets an older message
    overwrite newer metadata, and null fields keep the stored values.

    Config:
      update_device_metadata  (bool, default true) false: write no device_metadata rows
    """

    name = "enriched"
    description = "Enriched messages of any device type to iot_enriched_data, upserting device_metadata"
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "update_device_metadata": {
                "type": "boolean",
                "default": True,
                "description": "Upsert a device_metadata row for messages that carry metadata.",
            }
        },
    }
    targets = {
        "enriched": Target(
            "iot_enriched_data",
            (
                Column("time", "timestamptz"),
                Column("device_id", "text"),
                Column("device_type", "text"),
                Column("payload", "jsonb"),
                Column("metadata", "jsonb"),
                Column("fdi_package", "jsonb"),
                *SOURCE_COLUMNS,
            ),
        ),
        "device_metadata": DEVICE_METADATA_TARGET,
    }

    def __init__(self, config=None):
        super().__init__(config)
        self._update_metadata = self.config.get("update_device_metadata", True)

    def map(self, record: KafkaRecord) -> list[MappedRow]:
        message = message_object(record)
        device_id = device_id_of(message)
        time = message_time(message, record)
        device_type = as_text(message.get("device_type"), "device_type")
        payload = optional_object(message, "payload")
        metadata = optional_object(message, "metadata")
        fdi_package = optional_object(message, "fdi_package")
        rows = [
            MappedRow(
                "enriched",
                (
                    time,
                    device_id,
                    device_type,
                    jsonb(payload),
                    jsonb(metadata),
                    jsonb(fdi_package),
                    record.topic,
                    record.partition,
                    record.offset,
                ),
            )
        ]
        if self._update_metadata and (
            device_type is not None or metadata is not None or fdi_package is not None
        ):
            rows.append(
                MappedRow(
                    "device_metadata",
                    device_metadata_row(device_id, device_type, metadata, fdi_package, time),
                )
            )
        return rows
