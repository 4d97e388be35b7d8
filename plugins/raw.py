"""The `raw` mapper: any device's message, kept whole in iot_raw_data."""
from __future__ import annotations

from datetime import datetime

from sinkframe.mapping.base import Column, KafkaRecord, MappedRow, Target
from sinkframe.mapping.batch import RecordBatch
from sinkframe.mapping.coerce import as_text
from sinkframe.mapping.common import SOURCE_COLUMNS, device_id_of, jsonb, message_object
from sinkframe.mapping.fastpath import ColumnarMapper, FastPathResult, decoded_as_per_record, take_ordinary
from sinkframe.mapping.timestamps import parse_timestamp
from sinkframe_plugins import shipped_specs


class RawMapper(ColumnarMapper):
    """Stores every message as it came, one iot_raw_data row per message.

    Message (a JSON object):
      device_id  required; a non-blank string (kept verbatim) or an integer (stored as text)
      timestamp  optional; ISO-8601 string (no offset = UTC) or epoch s/ms/us number;
                 absent or null -> the Kafka record timestamp
      topic      optional; the MQTT topic the message came from -> mqtt_topic
      payload    optional; any JSON value, stored as jsonb (absent or null -> NULL)
    Other keys are ignored.

    `map_batch` decodes with orjson as the per-record path does and maps each
    message with the same code as `map()`; only records that fail (the ones
    `map()` rejects) go through the per-record path, for their rejection.
    """

    name = "raw"
    description = "Any device's message kept whole as jsonb in iot_raw_data"
    config_schema = {"type": "object", "additionalProperties": False, "properties": {}}
    table_specs = shipped_specs("iot_raw.yaml")
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
        row, _ = _rows(message_object(record), record.timestamp_ms)
        return [MappedRow("raw", (*row, record.topic, record.partition, record.offset))]

    def fast_path(self, batch: RecordBatch) -> FastPathResult:
        return take_ordinary(self, batch, _ordinary_rows, "raw")


def _rows(message: dict, kafka_timestamp_ms: int | None) -> tuple[tuple[datetime, str, str | None, object], None]:
    """The iot_raw_data row of a message, but for the source columns (and no second row)."""
    device_id = device_id_of(message)
    row = (
        parse_timestamp(message.get("timestamp"), fallback_ms=kafka_timestamp_ms),
        device_id,
        as_text(message.get("topic"), "topic"),
        jsonb(message.get("payload")),
    )
    return row, None


_ordinary_rows = decoded_as_per_record(_rows)
