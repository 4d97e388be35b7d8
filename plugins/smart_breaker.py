"""The `smart_breaker` mapper: smart breaker measurements as typed columns."""
from __future__ import annotations

import math

import msgspec
from msgspec.structs import astuple

from sinkframe.mapping.base import Column, KafkaRecord, MappedRow, Target
from sinkframe.mapping.batch import RecordBatch
from sinkframe.mapping.coerce import as_float, as_int, as_text, preview
from sinkframe.mapping.common import (
    DEVICE_METADATA_TARGET,
    SOURCE_COLUMNS,
    device_id_of,
    device_metadata_row,
    is_usable_device_id,
    jsonb,
    message_object,
    message_time,
    optional_object,
)
from sinkframe.mapping.fastdecode import ShallowObject, Int32
from sinkframe.mapping.fastpath import ColumnarMapper, FastPathResult, take_ordinary
from sinkframe.mapping.timestamps import parse_timestamp
from sinkframe_plugins import shipped_specs

DEVICE_TYPE = "smart_breaker"

# double precision columns, in table order; breaker_status and trip_count follow them.
FLOAT_MEASUREMENTS = (
    "voltage_phase_a",
    "voltage_phase_b",
    "voltage_phase_c",
    "current_phase_a",
    "current_phase_b",
    "current_phase_c",
    "temperature",
    "power_factor",
    "frequency",
    "active_power",
    "reactive_power",
    "energy_kwh",
)
KNOWN_MEASUREMENTS = frozenset((*FLOAT_MEASUREMENTS, "breaker_status", "trip_count"))

_EMPTY: dict = {}
_isfinite = math.isfinite

# The ordinary message, as the fleet simulator and the benchmark send it: all
# fourteen measurements under `measurements`, typed, nothing else there; an ISO
# timestamp; shallow metadata and FDI package. Field order is column order,
# so astuple() gives the measurement columns. (Why these types decode exactly as
# the per-record path's orjson does: sinkframe.mapping.fastdecode.)
_OrdinaryMeasurements = msgspec.defstruct(
    "OrdinaryMeasurements",
    [*((name, float) for name in FLOAT_MEASUREMENTS), ("breaker_status", str), ("trip_count", Int32)],
    forbid_unknown_fields=True,
    gc=False,
)


class _OrdinaryMessage(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    device_id: str
    measurements: _OrdinaryMeasurements
    timestamp: str | None = None
    device_type: str | None = None
    metadata: ShallowObject | None = None
    fdi_package: ShallowObject | None = None


_decode_ordinary = msgspec.json.Decoder(_OrdinaryMessage).decode


class SmartBreakerMapper(ColumnarMapper):
    """One smart_breaker_data row per message, and an upsert of the breaker's metadata.

    Message (a JSON object):
      device_id     required; a non-blank string (kept verbatim) or an integer (stored as text)
      timestamp     optional; ISO-8601 string (no offset = UTC) or epoch s/ms/us number;
                    absent or null -> the Kafka record timestamp
      device_type   optional; normally "smart_breaker". Another value is accepted (the
                    message is still mapped) unless strict_device_type is set.
      measurements  optional JSON object with
                      voltage_phase_a/b/c, current_phase_a/b/c, temperature, power_factor,
                      frequency, active_power, reactive_power, energy_kwh: numbers (or
                        numeric strings) -> double precision; bools, NaN, infinity rejected
                      breaker_status: text; a number or bool is stored as its text
                        ("true"/"false")
                      trip_count: integer; an integral float (3.0) is accepted, 3.5 is not
                    Any other key is kept, not dropped, in extra_measurements (jsonb; NULL
                    when there is none). A known measurement missing from `measurements`
                    (or all of them, when there is no `measurements`) is read from the top
                    level of the message instead. Missing measurements are NULL.
      metadata, fdi_package  optional JSON objects, as for the `enriched` mapper: a
                    message carrying either yields a device_metadata row (device_type
                    defaults to "smart_breaker"; first_seen = last_seen = message time).

    Config:
      update_device_metadata  (bool, default true) false: write no device_metadata rows
      strict_device_type      (bool, default false) true: a device_type other than
                              "smart_breaker" is an error (dead letter)

    `map_batch` decodes messages of the ordinary shape straight into columns: the
    fourteen measurements under `measurements` and nothing else there (numbers,
    breaker_status text, trip_count a 32-bit integer), no other top-level keys
    than those above, an ISO timestamp or none, device_type "smart_breaker" or
    none, metadata and fdi_package objects of scalars (and of arrays and objects
    of scalars). Every other record goes through the per-record path.
    """

    name = "smart_breaker"
    description = "Smart breaker measurements to typed smart_breaker_data columns, upserting device_metadata"
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "update_device_metadata": {
                "type": "boolean",
                "default": True,
                "description": "Upsert a device_metadata row for messages that carry metadata.",
            },
            "strict_device_type": {
                "type": "boolean",
                "default": False,
                "description": 'Reject messages whose device_type is not "smart_breaker".',
            },
        },
    }
    table_specs = shipped_specs("smart_breaker.yaml", "device_metadata.yaml")
    targets = {
        "measurements": Target(
            "smart_breaker_data",
            (
                Column("time", "timestamptz"),
                Column("device_id", "text"),
                *(Column(name, "double precision") for name in FLOAT_MEASUREMENTS),
                Column("breaker_status", "text"),
                Column("trip_count", "integer"),
                Column("extra_measurements", "jsonb"),
                *SOURCE_COLUMNS,
            ),
        ),
        "device_metadata": DEVICE_METADATA_TARGET,
    }

    def __init__(self, config=None):
        super().__init__(config)
        self._update_metadata = self.config.get("update_device_metadata", True)
        self._strict_device_type = self.config.get("strict_device_type", False)

    def map(self, record: KafkaRecord) -> list[MappedRow]:
        message = message_object(record)
        device_id = device_id_of(message)
        time = message_time(message, record)
        device_type = message.get("device_type")
        if self._strict_device_type and device_type is not None and device_type != DEVICE_TYPE:
            raise ValueError(f'device_type: expected "{DEVICE_TYPE}", got {preview(device_type)}')

        measurements = message.get("measurements")
        if measurements is None:
            measurements, top_level = message, _EMPTY
        elif type(measurements) is dict:
            top_level = message
        else:
            raise ValueError(
                f"measurements: expected a JSON object, got {type(measurements).__name__} "
                f"{preview(measurements)}"
            )
        row = [time, device_id]
        append = row.append
        for name in FLOAT_MEASUREMENTS:
            value = measurements.get(name)
            if value is None:
                value = top_level.get(name)
            if type(value) is float and _isfinite(value):
                append(value)
            else:
                append(as_float(value, name))
        status = measurements.get("breaker_status")
        append(as_text(top_level.get("breaker_status") if status is None else status, "breaker_status"))
        trips = measurements.get("trip_count")
        append(as_int(top_level.get("trip_count") if trips is None else trips, "trip_count", bits=32))
        append(_extra_measurements(measurements, top_level))
        append(record.topic)
        append(record.partition)
        append(record.offset)
        rows = [MappedRow("measurements", tuple(row))]

        if self._update_metadata:
            metadata = optional_object(message, "metadata")
            fdi_package = optional_object(message, "fdi_package")
            if metadata is not None or fdi_package is not None:
                seen_type = DEVICE_TYPE if device_type is None else device_type
                rows.append(
                    MappedRow(
                        "device_metadata",
                        device_metadata_row(device_id, seen_type, metadata, fdi_package, time),
                    )
                )
        return rows

    def fast_path(self, batch: RecordBatch) -> FastPathResult:
        return take_ordinary(self, batch, self._ordinary_rows, "measurements", "device_metadata")

    def _ordinary_rows(self, value: bytes | None, kafka_timestamp_ms: int | None) -> tuple | None:
        """The rows of an ordinary message, as `map()` makes them; None (or an exception) for any other."""
        message = _decode_ordinary(value)
        device_id = message.device_id
        measurements = message.measurements
        device_type = message.device_type
        # Another device_type is the per-record path's to judge (strict_device_type; text for device_metadata).
        if (not is_usable_device_id(device_id) or "\x00" in measurements.breaker_status
                or (device_type is not None and device_type != DEVICE_TYPE)):
            return None
        time = parse_timestamp(message.timestamp, fallback_ms=kafka_timestamp_ms)
        row = (time, device_id, *astuple(measurements), None)  # None: no extra_measurements
        metadata, fdi_package = message.metadata, message.fdi_package
        if self._update_metadata and (metadata is not None or fdi_package is not None):
            return row, device_metadata_row(device_id, DEVICE_TYPE, metadata, fdi_package, time)
        return row, None


def _extra_measurements(measurements: dict, top_level: dict):
    # Only keys under `measurements` can be extra: the top level also holds
    # device_id, metadata and so on. (When there is no `measurements` object,
    # top_level is empty and `measurements` is the message itself.)
    if top_level is _EMPTY or measurements.keys() <= KNOWN_MEASUREMENTS:
        return None
    return jsonb({key: value for key, value in measurements.items() if key not in KNOWN_MEASUREMENTS})
