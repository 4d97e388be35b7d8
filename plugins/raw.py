"""The `raw` mapper: any device's message, kept whole in iot_raw_data."""
from __future__ import annotations

from sinkframe.mapping.base import Column, KafkaRecord, MappedRow, Mapper, Target
from sinkframe.mapping.coerce import as_text
from sinkframe.mapping.common import (
    SOURCE_COLUMNS,
    device_id_of,
    jsonb,
    message_object,
    message_time,
)


class RawMapper(Mapper):
    """Stores every message as it came, one iot_raw_data row per message.

    Message (a JSON object):
      device_id  required; a non-blank string (kept verbatim) or an integer (stored as text)
      timestamp  optional; ISO-8601 string (no offset = UTC) or epoch s/ms/us number;
                 absent or null -> the Kafka record timestamp
      topic      optional; the MQTT topic the message came from -> mqtt_topic
      payload    optional; any JSON value, stored as jsonb (absent or null -> NULL)
    Other keys are ignored.
    """

    name = "raw"
    description = "Any device's message kept whole as jsonb in iot_raw_data"
    config_schema = {"type": "object", "additionalProperties": False, "properties": {}}
    targets = {
        "raw": Target(
            "iot_raw_data",
            (
                Column("time", "timestamptz"),
                Column("device_id", "text"),
                Column("mqtt_topic", "text"),
                Column("payload", "jsonb"),
                *SOURCE_COLUMNS,
            ),
        )
    }

    def map(self, record: KafkaRecord) -> list[MappedRow]:
        message = message_object(record)
        device_id = device_id_of(message)
        row = (
            message_time(message, record),
            device_id,
            as_text(message.get("topic"), "topic"),
            jsonb(message.get("payload")),
            record.topic,
            record.partition,
            record.offset,
        )
        return [MappedRow("raw", row)]
