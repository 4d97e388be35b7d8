"""Example third-party mapper plugin: a temperature/humidity sensor.

Drop this file in a folder passed with `--plugins-dir` (or ship it in a package
registered under the `sinkframe.mappers` entry-point group), create the table
(see the README section "Adding a device type"), and point a connector at it
with `mapper.plugin: env_sensor` (see env_sensor.yaml next to this file).

A mapper does no I/O: `map` turns one decoded message into rows, and raises
ValueError for a message it cannot map; the framework records it as a dead
letter with its topic, partition and offset.
"""
from __future__ import annotations

from sinkframe.mapping import Column, KafkaRecord, MappedRow, Mapper, Target
from sinkframe.mapping.coerce import as_float, preview
from sinkframe.mapping.timestamps import parse_timestamp


class EnvSensorMapper(Mapper):
    """Temperature/humidity readings, one env_sensor_data row per message.

    Message (a JSON object):
      device_id    required; a non-empty string
      timestamp    optional; ISO-8601 string or epoch s/ms number; absent -> Kafka timestamp
      temperature  required; number, in the unit set by `temperature_unit`
      humidity     required; relative humidity in percent, 0..100
      battery      optional; battery level (number)

    Config:
      temperature_unit  "C" (default) or "F"; stored temperatures are always Celsius
    """

    name = "env_sensor"
    description = "Temperature/humidity sensor readings to env_sensor_data (example plugin)"
    # Validated by the framework when the connector loads; defaults are not filled
    # in, so read options with self.config.get(key, default).
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "temperature_unit": {
                "enum": ["C", "F"],
                "default": "C",
                "description": "Unit of the temperature the sensors send.",
            }
        },
    }
    # Role "readings" -> default table; a connector can remap it under `tables:`.
    targets = {
        "readings": Target(
            "env_sensor_data",
            (
                Column("time", "timestamptz"),
                Column("device_id", "text"),
                Column("temperature", "double precision"),
                Column("humidity", "double precision"),
                Column("battery", "double precision"),
                Column("source_topic", "text"),
                Column("source_partition", "integer"),
                Column("source_offset", "bigint"),
            ),
        )
    }

    def __init__(self, config=None):
        super().__init__(config)
        self._fahrenheit = self.config.get("temperature_unit", "C") == "F"

    def map(self, record: KafkaRecord) -> list[MappedRow]:
        message = record.value
        if not isinstance(message, dict):
            raise ValueError(f"message: expected a JSON object, got {preview(message)}")
        device_id = message.get("device_id")
        if not isinstance(device_id, str) or not device_id:
            raise ValueError(f"device_id: expected a non-empty string, got {preview(device_id)}")
        time = parse_timestamp(message.get("timestamp"), fallback_ms=record.timestamp_ms)

        temperature = _required(as_float(message.get("temperature"), "temperature"), "temperature")
        if self._fahrenheit:
            temperature = (temperature - 32.0) * 5.0 / 9.0
        humidity = _required(as_float(message.get("humidity"), "humidity"), "humidity")
        if not 0.0 <= humidity <= 100.0:
            raise ValueError(f"humidity: expected a percentage 0..100, got {preview(humidity)}")
        battery = as_float(message.get("battery"), "battery")

        # Values in exactly the order of targets["readings"].columns.
        row = (time, device_id, temperature, humidity, battery, record.topic, record.partition, record.offset)
        return [MappedRow("readings", row)]


def _required(value: float | None, field: str) -> float:
    if value is None:
        raise ValueError(f"{field}: missing")
    return value
