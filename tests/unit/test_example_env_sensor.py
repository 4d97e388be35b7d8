"""The worked example plugin in examples/plugins (README: "Adding a device type")."""
from __future__ import annotations

import importlib.util
from datetime import datetime, timezone
from pathlib import Path

import jsonschema
import pytest
import yaml

from sinkframe.mapping import KafkaRecord, Mapper

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "plugins"
KAFKA_MS = 1_714_564_800_000
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


def load_example():
    spec = importlib.util.spec_from_file_location("env_sensor_example", EXAMPLES / "env_sensor.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EnvSensorMapper = load_example().EnvSensorMapper
READINGS = EnvSensorMapper.targets["readings"]


def row_of(value, config=None):
    rows = EnvSensorMapper(config or {}).map(KafkaRecord("iot.env_sensor", 1, 5, KAFKA_MS, None, value))
    assert len(rows) == 1 and rows[0].role == "readings"
    assert len(rows[0].values) == len(READINGS.columns)
    return dict(zip(READINGS.column_names, rows[0].values))


def test_contract():
    assert issubclass(EnvSensorMapper, Mapper)
    assert EnvSensorMapper.name == "env_sensor"
    assert EnvSensorMapper.description and EnvSensorMapper.__doc__
    assert READINGS.default_table == "env_sensor_data"
    assert READINGS.column_names == (
        "time", "device_id", "temperature", "humidity", "battery", "source_topic", "source_partition", "source_offset",
    )
    jsonschema.Draft202012Validator.check_schema(EnvSensorMapper.config_schema)


def test_reading():
    row = row_of({"device_id": "env-1", "timestamp": "2024-05-01T14:00:00+02:00", "temperature": 21.5, "humidity": 40})
    assert row == {
        "time": T0,
        "device_id": "env-1",
        "temperature": 21.5,
        "humidity": 40.0,
        "battery": None,
        "source_topic": "iot.env_sensor",
        "source_partition": 1,
        "source_offset": 5,
    }


def test_battery_and_kafka_timestamp():
    row = row_of({"device_id": "env-1", "temperature": 20, "humidity": 50, "battery": 3.1})
    assert (row["time"], row["battery"]) == (T0, 3.1)


def test_fahrenheit_config():
    row = row_of({"device_id": "env-1", "temperature": 212, "humidity": 50}, {"temperature_unit": "F"})
    assert row["temperature"] == pytest.approx(100.0)


@pytest.mark.parametrize(
    "value, field",
    [
        ({"temperature": 20, "humidity": 50}, "device_id"),
        ({"device_id": "e", "humidity": 50}, "temperature"),
        ({"device_id": "e", "temperature": "warm", "humidity": 50}, "temperature"),
        ({"device_id": "e", "temperature": 20, "humidity": 150}, "humidity"),
        ({"device_id": "e", "temperature": 20, "humidity": True}, "humidity"),
        ({"device_id": "e", "temperature": 20, "humidity": 50, "timestamp": "later"}, "timestamp"),
        (["e", 20, 50], "message"),
    ],
)
def test_bad_messages(value, field):
    with pytest.raises(ValueError, match=f"^{field}: "):
        EnvSensorMapper({}).map(KafkaRecord("iot.env_sensor", 0, 0, KAFKA_MS, None, value))


def test_connector_yaml_matches_plugin():
    connector = yaml.safe_load((EXAMPLES / "env_sensor.yaml").read_text())
    assert connector["mapper"]["plugin"] == EnvSensorMapper.name
    jsonschema.validate(connector["mapper"]["config"], EnvSensorMapper.config_schema)
    assert set(connector["tables"]) == set(EnvSensorMapper.targets)
    assert connector["tables"]["readings"] == READINGS.default_table
