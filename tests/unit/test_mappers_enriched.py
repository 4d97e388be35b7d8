"""The built-in `enriched` mapper and the device_metadata row it shares with smart_breaker."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import jsonschema
import pytest
from psycopg.types.json import Jsonb

from sinkframe.mapping import KafkaRecord, Upsert
from sinkframe_plugins.enriched import EnrichedMapper

KAFKA_MS = 1_714_564_800_000
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
ENRICHED = EnrichedMapper.targets["enriched"]
METADATA = EnrichedMapper.targets["device_metadata"]

MESSAGE = {
    "device_id": "breaker-7",
    "timestamp": "2024-05-01T12:00:00Z",
    "device_type": "smart_breaker",
    "payload": {"voltage": 230.1},
    "metadata": {
        "manufacturer": "ACME",
        "model": "SB-3",
        "firmware_version": "1.4.2",
        "location": "Building A / floor 2",
        "capabilities": ["trip", "metering"],
    },
    "fdi_package": {"package_id": "pkg-9", "version": "2.0", "vendor": "ACME"},
}


def record(value, *, timestamp_ms=KAFKA_MS):
    return KafkaRecord("iot.enriched", 0, 7, timestamp_ms, b"breaker-7", value)


def mapped(value, config=None):
    rows = EnrichedMapper(config or {}).map(record(value))
    assert isinstance(rows, (list, tuple))
    result = {}
    for row in rows:
        target = EnrichedMapper.targets[row.role]
        assert len(row.values) == len(target.columns)
        assert row.role not in result
        result[row.role] = dict(zip(target.column_names, row.values))
    return result


def test_contract():
    assert EnrichedMapper.name == "enriched"
    assert EnrichedMapper.description and "\n" not in EnrichedMapper.description
    assert "fdi_package" in EnrichedMapper.__doc__
    assert ENRICHED.default_table == "iot_enriched_data"
    assert ENRICHED.column_names == (
        "time", "device_id", "device_type", "payload", "metadata", "fdi_package",
        "source_topic", "source_partition", "source_offset",
    )
    assert METADATA.default_table == "device_metadata"
    assert METADATA.column_names == (
        "device_id", "device_type", "manufacturer", "model", "firmware_version", "location",
        "capabilities", "fdi_package_id", "fdi_package_version", "first_seen", "last_seen",
    )
    assert METADATA.upsert == Upsert(key=("device_id",), version_column="last_seen", min_columns=("first_seen",))


def test_config_schema():
    schema = EnrichedMapper.config_schema
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate({}, schema)
    jsonschema.validate({"update_device_metadata": False}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"update_device_metadata": "no"}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"other": 1}, schema)


def test_full_message():
    rows = mapped(MESSAGE)
    enriched, meta = rows["enriched"], rows["device_metadata"]
    assert enriched["time"] == T0
    assert enriched["device_id"] == "breaker-7"
    assert enriched["device_type"] == "smart_breaker"
    for column in ("payload", "metadata", "fdi_package"):
        assert isinstance(enriched[column], Jsonb)
        assert enriched[column].obj == MESSAGE[column]
    assert (enriched["source_topic"], enriched["source_partition"], enriched["source_offset"]) == ("iot.enriched", 0, 7)
    assert meta == {
        "device_id": "breaker-7",
        "device_type": "smart_breaker",
        "manufacturer": "ACME",
        "model": "SB-3",
        "firmware_version": "1.4.2",
        "location": "Building A / floor 2",
        "capabilities": meta["capabilities"],
        "fdi_package_id": "pkg-9",
        "fdi_package_version": "2.0",
        "first_seen": T0,
        "last_seen": T0,
    }
    assert isinstance(meta["capabilities"], Jsonb) and meta["capabilities"].obj == ["trip", "metering"]


def test_message_without_metadata_yields_no_metadata_row():
    rows = mapped({"device_id": "d", "payload": {"x": 1}})
    assert set(rows) == {"enriched"}
    assert rows["enriched"]["time"] == T0  # Kafka timestamp
    assert rows["enriched"]["device_type"] is None
    assert rows["enriched"]["metadata"] is None and rows["enriched"]["fdi_package"] is None


@pytest.mark.parametrize(
    "extra", [{"device_type": "thermostat"}, {"metadata": {"model": "X"}}, {"fdi_package": {"package_id": "p"}}]
)
def test_any_metadata_field_yields_a_metadata_row(extra):
    rows = mapped({"device_id": "d", **extra})
    meta = rows["device_metadata"]
    assert meta["device_id"] == "d"
    assert meta["first_seen"] == meta["last_seen"] == T0
    filled = {k for k, v in meta.items() if v is not None} - {"device_id", "first_seen", "last_seen"}
    assert len(filled) == 1  # absent fields stay NULL so the upsert keeps stored values


def test_update_device_metadata_false():
    assert set(mapped(MESSAGE, {"update_device_metadata": False})) == {"enriched"}


def test_out_of_order_message_still_yields_metadata_row_with_its_own_time():
    old = dict(MESSAGE, timestamp="2020-01-01T00:00:00Z")
    meta = mapped(old)["device_metadata"]
    assert meta["first_seen"] == meta["last_seen"] == datetime(2020, 1, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "location, stored",
    [
        ({"lat": 52.5, "lon": 13.4, "site": "Zürich"}, '{"lat":52.5,"lon":13.4,"site":"Zürich"}'),
        ([52.5, 13.4], "[52.5,13.4]"),
        ("Hall 3", "Hall 3"),
        (None, None),
    ],
)
def test_location(location, stored):
    meta = mapped({"device_id": "d", "metadata": {"location": location}})["device_metadata"]
    assert meta["location"] == stored
    if isinstance(location, (dict, list)):
        assert json.loads(meta["location"]) == location


def test_numeric_versions_become_text():
    meta = mapped({"device_id": "d", "metadata": {"firmware_version": 3}, "fdi_package": {"version": 1.5}})[
        "device_metadata"
    ]
    assert (meta["firmware_version"], meta["fdi_package_version"]) == ("3", "1.5")


def test_epoch_millisecond_timestamp():
    rows = mapped({"device_id": "d", "timestamp": KAFKA_MS + 1500})
    assert rows["enriched"]["time"] == T0 + timedelta(milliseconds=1500)


def test_device_id_with_quotes_and_unicode_kept_verbatim():
    device_id = 'Gerät "Nord" \'1\' — ✓'
    rows = mapped(dict(MESSAGE, device_id=device_id))
    assert rows["enriched"]["device_id"] == rows["device_metadata"]["device_id"] == device_id


@pytest.mark.parametrize(
    "change, field",
    [
        ({"device_id": None}, "device_id"),
        ({"device_id": 1.5}, "device_id"),
        ({"timestamp": "tomorrow"}, "timestamp"),
        ({"payload": [1, 2]}, "payload"),
        ({"payload": "text"}, "payload"),
        ({"metadata": "ACME"}, "metadata"),
        ({"fdi_package": ["pkg"]}, "fdi_package"),
        ({"device_type": {"kind": "x"}}, "device_type"),
        ({"metadata": {"manufacturer": {"name": "ACME"}}}, "metadata.manufacturer"),
        ({"fdi_package": {"package_id": ["a"]}}, "fdi_package.package_id"),
    ],
)
def test_bad_messages_name_the_field(change, field):
    with pytest.raises(ValueError, match=f"^{field}: "):
        EnrichedMapper({}).map(record(dict(MESSAGE, **change)))


def test_message_must_be_an_object():
    with pytest.raises(ValueError, match="^message: "):
        EnrichedMapper({}).map(record([MESSAGE]))
