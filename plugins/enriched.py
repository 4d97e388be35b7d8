"""The `enriched` mapper: enriched messages of any device type, plus device metadata."""
from __future__ import annotations

from sinkframe.mapping.base import Column, KafkaRecord, MappedRow, Target
from sinkframe.mapping.batch import RecordBatch
from sinkframe.mapping.coerce import as_text
from sinkframe.mapping.common import (
    DEVICE_METADATA_TARGET,
    SOURCE_COLUMNS,
    device_id_of,
    device_metadata_row,
    jsonb,
    message_object,
    optional_object,
)
from sinkframe.mapping.fastpath import ColumnarMapper, FastPathResult, decoded_as_per_record, take_ordinary
from sinkframe.mapping.timestamps import parse_timestamp
from sinkframe_plugins import shipped_specs


class EnrichedMapper(ColumnarMapper):
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

    `map_batch` decodes with orjson as the per-record path does and maps each
    message with the same code as `map()`; only records that fail (the ones
    `map()` rejects) go through the per-record path, for their rejection.
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
    table_specs = shipped_specs("iot_enriched.yaml", "device_metadata.yaml")
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
        row, metadata_row = self._rows(message_object(record), record.timestamp_ms)
        rows = [MappedRow("enriched", (*row, record.topic, record.partition, record.offset))]
        if metadata_row is not None:
            rows.append(MappedRow("device_metadata", metadata_row))
        return rows

    def fast_path(self, batch: RecordBatch) -> FastPathResult:
        return take_ordinary(self, batch, decoded_as_per_record(self._rows), "enriched", "device_metadata")

    def _rows(self, message: dict, kafka_timestamp_ms: int | None) -> tuple[tuple, tuple | None]:
        """The iot_enriched_data row of a message (but for the source columns), and its device_metadata row."""
        device_id = device_id_of(message)
        time = parse_timestamp(message.get("timestamp"), fallback_ms=kafka_timestamp_ms)
        device_type = as_text(message.get("device_type"), "device_type")
        payload = optional_object(message, "payload")
        metadata = optional_object(message, "metadata")
        fdi_package = optional_object(message, "fdi_package")
        row = (time, device_id, device_type, jsonb(payload), jsonb(metadata), jsonb(fdi_package))
        if self._update_metadata and (
            device_type is not None or metadata is not None or fdi_package is not None
        ):
            return row, device_metadata_row(device_id, device_type, metadata, fdi_package, time)
        return row, None
