"""Pieces shared by the built-in mappers: message checks and the device_metadata row.

JSON columns are wrapped in `psycopg.types.json.Jsonb`: the wrapper is what makes a
dict or list go to a jsonb column both through binary COPY and as an INSERT
parameter (a bare list would otherwise be sent as a PostgreSQL array).
"""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from sinkframe.mapping.base import Column, KafkaRecord, Target, Upsert
from sinkframe.mapping.coerce import as_text, preview
from sinkframe.mapping.timestamps import parse_timestamp

__all__ = [
    "DEVICE_METADATA_TARGET",
    "SOURCE_COLUMNS",
    "device_id_of",
    "device_metadata_row",
    "is_usable_device_id",
    "jsonb",
    "message_object",
    "message_time",
    "optional_object",
]

# Every data table ends with the Kafka coordinates of the message (docs/tables.md).
SOURCE_COLUMNS = (
    Column("source_topic", "text"),
    Column("source_partition", "integer"),
    Column("source_offset", "bigint"),
)

DEVICE_METADATA_TARGET = Target(
    "device_metadata",
    (
        Column("device_id", "text"),
        Column("device_type", "text"),
        Column("manufacturer", "text"),
        Column("model", "text"),
        Column("firmware_version", "text"),
        Column("location", "text"),
        Column("capabilities", "jsonb"),
        Column("fdi_package_id", "text"),
        Column("fdi_package_version", "text"),
        Column("first_seen", "timestamptz"),
        Column("last_seen", "timestamptz"),
    ),
    upsert=Upsert(key=("device_id",), version_column="last_seen", min_columns=("first_seen",)),
)

_NO_OBJECT: dict = {}


def message_object(record: KafkaRecord) -> dict:
    """The record value, which must be a JSON object."""
    value = record.value
    if type(value) is dict:
        return value
    raise ValueError(f"message: expected a JSON object, got {type(value).__name__} {preview(value)}")


def device_id_of(message: dict) -> str:
    """`device_id`: a non-blank string kept verbatim; an integer is turned into its text."""
    device_id = message.get("device_id")
    if type(device_id) is str:
        if is_usable_device_id(device_id):
            return device_id
    elif type(device_id) is int:
        return str(device_id)
    if device_id is None:
        raise ValueError("device_id: missing")
    raise ValueError(
        f"device_id: expected a non-empty string, got {type(device_id).__name__} {preview(device_id)}"
    )


def is_usable_device_id(text: str) -> bool:
    """Whether `device_id_of` keeps this string: not empty, not blank, no NUL."""
    return bool(text) and not text.isspace() and "\x00" not in text


def message_time(message: dict, record: KafkaRecord) -> datetime:
    """`timestamp` of the message, or the Kafka timestamp when it has none."""
    return parse_timestamp(message.get("timestamp"), fallback_ms=record.timestamp_ms)


def optional_object(message: dict, field: str) -> dict | None:
    """`message[field]` when it is a JSON object, None when absent or null."""
    value = message.get(field)
    if value is None or type(value) is dict:
        return value
    raise ValueError(f"{field}: expected a JSON object, got {type(value).__name__} {preview(value)}")


def jsonb(value: Any) -> Jsonb | None:
    """A value for a jsonb column: SQL NULL for None, else the JSON value wrapped."""
    return None if value is None else Jsonb(value)


def device_metadata_row(
    device_id: str,
    device_type: Any,
    metadata: dict | None,
    fdi_package: dict | None,
    seen: datetime,
) -> tuple:
    """The device_metadata row one message contributes, in DEVICE_METADATA_TARGET order.

    first_seen and last_seen are both the message time; the upsert keeps the
    smallest first_seen and ignores rows whose last_seen is older than the
    stored one, so an out-of-order message still yields a row here.
    """
    meta = _NO_OBJECT if metadata is None else metadata
    fdi = _NO_OBJECT if fdi_package is None else fdi_package
    return (
        device_id,
        as_text(device_type, "device_type"),
        as_text(meta.get("manufacturer"), "metadata.manufacturer"),
        as_text(meta.get("model"), "metadata.model"),
        as_text(meta.get("firmware_version"), "metadata.firmware_version"),
        _location_text(meta.get("location")),
        jsonb(meta.get("capabilities")),
        as_text(fdi.get("package_id"), "fdi_package.package_id"),
        as_text(fdi.get("version"), "fdi_package.version"),
        seen,
        seen,
    )


def _location_text(location: Any) -> str | None:
    # The column is text: a structured location (coordinates, a site object) is
    # kept whole as compact JSON rather than picking fields out of it.
    if type(location) is dict or type(location) is list:
        return json.dumps(location, ensure_ascii=False, separators=(",", ":"))
    return as_text(location, "metadata.location")
