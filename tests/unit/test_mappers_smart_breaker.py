"""The built-in `smart_breaker` mapper."""
from __future__ import annotations

import math
from datetime import datetime, timezone

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

from sinkframe.mapping import KafkaRecord
from sinkframe_plugins.enriched import EnrichedMapper
from sinkframe_plugins.smart_breaker import FLOAT_MEASUREMENTS, KNOWN_MEASUREMENTS, SmartBreakerMapper

KAFKA_MS = 1_714_564_800_000
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
DATA = SmartBreakerMapper.targets["measurements"]

MEASUREMENTS = {
    "voltage_phase_a": 230.1,
    "voltage_phase_b": 229.8,
    "voltage_phase_c": 231,
    "current_phase_a": 10.5,
    "current_phase_b": 11.0,
    "current_phase_c": 9.75,
    "temperature": 41.2,
    "power_factor": 0.97,
    "frequency": 50.01,
    "active_power": 7200.0,
    "reactive_power": 850.5,
    "energy_kwh": 123456.789,
    "breaker_status": "closed",
    "trip_count": 3,
}
MESSAGE = {
    "device_id": "breaker-7",
    "timestamp": "2024-05-01T12:00:00Z",
    "device_type": "smart_breaker",
    "measurements": MEASUREMENTS,
}


def record(value, *, timestamp_ms=KAFKA_MS):
    return KafkaRecord("iot.smart_breaker.enriched", 2, 99, timestamp_ms, None, value)


def mapped(value, config=None):
    rows = SmartBreakerMapper(config or {}).map(record(value))
    assert isinstance(rows, (list, tuple))
    result = {}
    for row in rows:
        target = SmartBreakerMapper.targets[row.role]
        assert len(row.values) == len(target.columns)
        assert row.role not in result
        result[row.role] = dict(zip(target.column_names, row.values))
    return result


def data_row(value, config=None):
    return mapped(value, config)["measurements"]


def test_contract():
    assert SmartBreakerMapper.name == "smart_breaker"
    assert SmartBreakerMapper.description and "\n" not in SmartBreakerMapper.description
    assert "extra_measurements" in SmartBreakerMapper.__doc__
    assert DATA.default_table == "smart_breaker_data"
    assert DATA.column_names == (
        "time", "device_id", *FLOAT_MEASUREMENTS, "breaker_status", "trip_count", "extra_measurements",
        "source_topic", "source_partition", "source_offset",
    )
    types = {c.name: c.pg_type for c in DATA.columns}
    assert {types[name] for name in FLOAT_MEASUREMENTS} == {"double precision"}
    assert (types["breaker_status"], types["trip_count"], types["extra_measurements"]) == ("text", "integer", "jsonb")
    assert SmartBreakerMapper.targets["device_metadata"] == EnrichedMapper.targets["device_metadata"]


def test_config_schema():
    schema = SmartBreakerMapper.config_schema
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate({"update_device_metadata": False, "strict_device_type": True}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"strict": True}, schema)


def test_full_message():
    rows = mapped(MESSAGE)
    assert set(rows) == {"measurements"}  # no metadata/fdi_package: no metadata upsert
    row = rows["measurements"]
    assert row["time"] == T0 and row["device_id"] == "breaker-7"
    for name in FLOAT_MEASUREMENTS:
        assert row[name] == MEASUREMENTS[name] and type(row[name]) is float
    assert row["breaker_status"] == "closed"
    assert row["trip_count"] == 3
    assert row["extra_measurements"] is None
    assert (row["source_topic"], row["source_partition"], row["source_offset"]) == ("iot.smart_breaker.enriched", 2, 99)


def test_top_level_measurements():
    row = data_row({"device_id": "b", "voltage_phase_a": 230.0, "trip_count": 1, "breaker_status": "open"})
    assert (row["voltage_phase_a"], row["trip_count"], row["breaker_status"]) == (230.0, 1, "open")
    assert row["current_phase_a"] is None
    assert row["extra_measurements"] is None  # other top-level keys are not measurements


def test_top_level_fills_keys_missing_from_measurements():
    row = data_row(
        {"device_id": "b", "measurements": {"voltage_phase_a": 1.0}, "voltage_phase_a": 2.0, "frequency": 50.0}
    )
    assert (row["voltage_phase_a"], row["frequency"]) == (1.0, 50.0)


def test_unknown_measurements_are_kept():
    row = data_row({"device_id": "b", "measurements": {"temperature": 40.0, "humidity": 55, "fw_flags": ["x"]}})
    assert row["temperature"] == 40.0
    assert isinstance(row["extra_measurements"], Jsonb)
    assert row["extra_measurements"].obj == {"humidity": 55, "fw_flags": ["x"]}


def test_missing_measurements_are_null():
    row = data_row({"device_id": "b", "measurements": {}})
    assert all(row[name] is None for name in KNOWN_MEASUREMENTS)


def test_numeric_strings_and_ints_are_accepted():
    row = data_row({"device_id": "b", "measurements": {"voltage_phase_a": "230.5", "frequency": 50, "trip_count": "2"}})
    assert (row["voltage_phase_a"], row["frequency"], row["trip_count"]) == (230.5, 50.0, 2)


def test_trip_count_integral_float_ok():
    assert data_row({"device_id": "b", "measurements": {"trip_count": 3.0}})["trip_count"] == 3


@pytest.mark.parametrize("status, stored", [("tripped", "tripped"), (True, "true"), (False, "false"), (1, "1")])
def test_breaker_status_text(status, stored):
    assert data_row({"device_id": "b", "measurements": {"breaker_status": status}})["breaker_status"] == stored


@pytest.mark.parametrize(
    "measurements, field",
    [
        ({"trip_count": 3.5}, "trip_count"),
        ({"trip_count": True}, "trip_count"),
        ({"trip_count": 2**31}, "trip_count"),
        ({"voltage_phase_a": True}, "voltage_phase_a"),
        ({"temperature": math.nan}, "temperature"),
        ({"frequency": math.inf}, "frequency"),
        ({"energy_kwh": "lots"}, "energy_kwh"),
        ({"power_factor": [0.9]}, "power_factor"),
        ({"breaker_status": {"state": "open"}}, "breaker_status"),
    ],
)
def test_wrong_typed_measurement_names_field_and_value(measurements, field):
    with pytest.raises(ValueError, match=f"^{field}: ") as caught:
        SmartBreakerMapper({}).map(record({"device_id": "b", "measurements": measurements}))
    assert repr(next(iter(measurements.values())))[:20] in str(caught.value)


def test_wrong_typed_top_level_measurement():
    with pytest.raises(ValueError, match="^current_phase_b: "):
        SmartBreakerMapper({}).map(record({"device_id": "b", "current_phase_b": "high"}))


@pytest.mark.parametrize(
    "value, field",
    [
        ({"measurements": MEASUREMENTS}, "device_id"),
        ({"device_id": "b", "measurements": [1, 2]}, "measurements"),
        ({"device_id": "b", "measurements": "230V"}, "measurements"),
        ({"device_id": "b", "timestamp": "soon"}, "timestamp"),
        ({"device_id": "b", "metadata": "ACME"}, "metadata"),
        ("breaker-7", "message"),
    ],
)
def test_bad_messages(value, field):
    with pytest.raises(ValueError, match=f"^{field}: "):
        SmartBreakerMapper({}).map(record(value))


def test_other_device_type_is_accepted_by_default():
    row = data_row(dict(MESSAGE, device_type="smart_meter"))
    assert row["voltage_phase_a"] == 230.1


def test_strict_device_type():
    strict = {"strict_device_type": True}
    assert data_row(MESSAGE, strict)["device_id"] == "breaker-7"
    assert data_row({"device_id": "b"}, strict)["device_id"] == "b"  # absent is fine
    with pytest.raises(ValueError, match='^device_type: .*smart_meter'):
        SmartBreakerMapper(strict).map(record(dict(MESSAGE, device_type="smart_meter")))


def test_metadata_row():
    message = dict(
        MESSAGE,
        metadata={"manufacturer": "ACME", "location": {"building": "A"}, "capabilities": {"remote_trip": True}},
        fdi_package={"package_id": "pkg-1", "version": "3.1"},
    )
    meta = mapped(message)["device_metadata"]
    assert meta["device_id"] == "breaker-7"
    assert meta["device_type"] == "smart_breaker"
    assert meta["manufacturer"] == "ACME" and meta["model"] is None
    assert meta["location"] == '{"building":"A"}'
    assert meta["capabilities"].obj == {"remote_trip": True}
    assert (meta["fdi_package_id"], meta["fdi_package_version"]) == ("pkg-1", "3.1")
    assert meta["first_seen"] == meta["last_seen"] == T0


def test_metadata_row_device_type_defaults_to_smart_breaker():
    meta = mapped({"device_id": "b", "fdi_package": {"package_id": "p"}})["device_metadata"]
    assert meta["device_type"] == "smart_breaker"


def test_out_of_order_metadata_row_keeps_message_time():
    message = dict(MESSAGE, timestamp=1_500_000_000, metadata={"model": "SB-1"})
    meta = mapped(message)["device_metadata"]
    assert meta["first_seen"] == meta["last_seen"] == datetime(2017, 7, 14, 2, 40, tzinfo=timezone.utc)


def test_update_device_metadata_false():
    message = dict(MESSAGE, metadata={"model": "SB-1"})
    assert set(mapped(message, {"update_device_metadata": False})) == {"measurements"}


def test_device_id_verbatim():
    device_id = "Schalter \"Ost\" 'ß' ⚡"
    assert data_row(dict(MESSAGE, device_id=device_id))["device_id"] == device_id


def test_missing_timestamp_uses_kafka_timestamp():
    assert data_row({"device_id": "b"})["time"] == T0
    with pytest.raises(ValueError, match="^timestamp: "):
        SmartBreakerMapper({}).map(record({"device_id": "b"}, timestamp_ms=None))


finite = st.floats(allow_nan=False, allow_infinity=False)
unknown_names = st.text(min_size=1, max_size=20).filter(lambda name: name not in KNOWN_MEASUREMENTS)


@given(
    known=st.dictionaries(st.sampled_from(FLOAT_MEASUREMENTS), finite),
    unknown=st.dictionaries(unknown_names, finite, max_size=5),
)
def test_property_known_to_columns_unknown_to_extra(known, unknown):
    row = data_row({"device_id": "b", "measurements": {**known, **unknown}})
    for name in FLOAT_MEASUREMENTS:
        assert row[name] == known.get(name)
    if unknown:
        assert row["extra_measurements"].obj == unknown
    else:
        assert row["extra_measurements"] is None
