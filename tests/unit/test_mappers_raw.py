"""The built-in `raw` mapper."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from psycopg.types.json import Jsonb

from sinkframe.mapping import KafkaRecord, Mapper
from sinkframe_plugins.raw import RawMapper

KAFKA_MS = 1_714_564_800_000  # 2024-05-01T12:00:00Z
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
COLUMNS = RawMapper.targets["raw"].column_names


def record(value, *, timestamp_ms=KAFKA_MS, offset=42):
    return KafkaRecord("iot.raw", 3, offset, timestamp_ms, None, value)


def only_row(value, **kwargs):
    rows = RawMapper({}).map(record(value, **kwargs))
    assert isinstance(rows, (list, tuple))
    assert len(rows) == 1 and rows[0].role == "raw"
    assert len(rows[0].values) == len(COLUMNS)
    return dict(zip(COLUMNS, rows[0].values))


def test_contract():
    assert issubclass(RawMapper, Mapper)
    assert RawMapper.name == "raw"
    assert RawMapper.description and "\n" not in RawMapper.description
    assert "device_id" in RawMapper.__doc__
    assert RawMapper.targets["raw"].default_table == "iot_raw_data"
    assert COLUMNS == (
        "time", "device_id", "mqtt_topic", "payload", "source_topic", "source_partition", "source_offset",
    )
    assert [c.pg_type for c in RawMapper.targets["raw"].columns] == [
        "timestamptz", "text", "text", "jsonb", "text", "integer", "bigint",
    ]


def test_full_message():
    payload = {"temperature": 21.5, "nested": {"a": [1, 2, None]}}
    row = only_row(
        {"device_id": "dev-1", "timestamp": "2024-05-01T17:30:00+05:30", "topic": "sensors/dev-1", "payload": payload}
    )
    assert row["time"] == T0
    assert row["device_id"] == "dev-1"
    assert row["mqtt_topic"] == "sensors/dev-1"
    assert isinstance(row["payload"], Jsonb) and row["payload"].obj is payload
    assert (row["source_topic"], row["source_partition"], row["source_offset"]) == ("iot.raw", 3, 42)


def test_minimal_message_uses_kafka_timestamp():
    row = only_row({"device_id": "dev-1"})
    assert row["time"] == T0
    assert row["mqtt_topic"] is None and row["payload"] is None


@pytest.mark.parametrize("payload", [[1, 2, 3], "text", 7, 2.5, True, {}])
def test_any_json_payload_is_kept(payload):
    row = only_row({"device_id": "d", "payload": payload})
    assert isinstance(row["payload"], Jsonb) and row["payload"].obj == payload


def test_json_null_payload_is_sql_null():
    assert only_row({"device_id": "d", "payload": None})["payload"] is None


@pytest.mark.parametrize("device_id", ['dév-"ü"\'; DROP TABLE x; --', "设备/1", "a\tb", " padded "])
def test_device_id_kept_verbatim(device_id):
    assert only_row({"device_id": device_id})["device_id"] == device_id


def test_integer_device_id_becomes_text():
    assert only_row({"device_id": 1234})["device_id"] == "1234"


@pytest.mark.parametrize(
    "value, field",
    [
        ({"timestamp": "2024-05-01T12:00:00Z"}, "device_id"),
        ({"device_id": ""}, "device_id"),
        ({"device_id": "   "}, "device_id"),
        ({"device_id": None}, "device_id"),
        ({"device_id": True}, "device_id"),
        ({"device_id": ["a"]}, "device_id"),
        ({"device_id": "a\x00b"}, "device_id"),
        ({"device_id": "d", "timestamp": "not a time"}, "timestamp"),
        ({"device_id": "d", "timestamp": True}, "timestamp"),
        ({"device_id": "d", "topic": {"t": 1}}, "topic"),
        ([{"device_id": "d"}], "message"),
        ("device_id=d", "message"),
        (None, "message"),
    ],
)
def test_bad_messages_name_the_field(value, field):
    with pytest.raises(ValueError, match=f"^{field}: "):
        RawMapper({}).map(record(value))


def test_missing_both_timestamps():
    with pytest.raises(ValueError, match="^timestamp: missing"):
        RawMapper({}).map(record({"device_id": "d"}, timestamp_ms=None))


def test_bad_value_is_truncated_in_error():
    with pytest.raises(ValueError) as caught:
        RawMapper({}).map(record({"device_id": "d", "timestamp": "y" * 1000}))
    assert len(str(caught.value)) < 160
