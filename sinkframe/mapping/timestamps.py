"""Message timestamps -> timezone-aware UTC datetimes, for mappers."""
from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import Any

from sinkframe.mapping.coerce import preview

UTC = timezone.utc
_fromisoformat = datetime.fromisoformat
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Epoch numbers carry no unit, so it is inferred from the magnitude. Each limit is
# 1e11 of the unit below: 1e11 s is the year 5138, while 1e11 ms is 1973, so no
# plausible timestamp falls on the wrong side of a limit.
_MILLIS_FROM = 1e11
_MICROS_FROM = 1e14
_NANOS_FROM = 1e17


def parse_timestamp(value: Any, *, fallback_ms: int | None, field: str = "timestamp") -> datetime:
    """The message time as a timezone-aware UTC datetime.

    `value` may be:
    - an ISO-8601 string with an offset or `Z` ("2024-05-01T12:00:00+05:30" is
      converted to 07:00 UTC). A string without an offset is taken as UTC.
    - an epoch number (int or float, or a string holding one). The unit comes from
      the magnitude: abs(value) < 1e11 is seconds, < 1e14 milliseconds, < 1e17
      microseconds, anything larger nanoseconds (1e11 s would be the year 5138,
      1e11 ms is 1973). An all-digit string is always an epoch number, never an
      ISO basic-format date ("20240131" is 1970-08-23T03:28:51Z).
    - None (field absent or null): the Kafka record timestamp `fallback_ms`
      (milliseconds since the epoch) is used. Kafka reports "no timestamp" as -1,
      so a negative `fallback_ms` counts as missing too.

    Raises ValueError naming `field` and the bad value for a missing time (no
    value and no usable Kafka timestamp), an unparseable string, a bool, NaN or
    infinity, or a time outside the years 1..9999.
    """
    kind = type(value)
    if kind is str:
        return _from_text(value, field)
    if kind is int or kind is float:
        return _from_epoch(value, value, field)
    if value is None:
        if fallback_ms is None or fallback_ms < 0:
            raise ValueError(f"{field}: missing, and the Kafka record carries no timestamp")
        return _from_epoch_ms(fallback_ms, field)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _from_epoch(value, value, field)
    raise ValueError(
        f"{field}: expected an ISO-8601 string or an epoch number, got "
        f"{type(value).__name__} {preview(value)}"
    )


def _from_text(text: str, field: str) -> datetime:
    try:
        parsed = _fromisoformat(text)
    except ValueError:
        parsed = None
    else:
        # The common case, first: a time already in UTC is the answer as it is. (A
        # string of digits is an epoch number, below; it never parses with an offset.)
        if parsed.tzinfo is UTC:
            return parsed
    if text.isdigit() and text.isascii() and len(text) < 40:
        return _from_epoch(int(text), text, field)
    if parsed is None:
        parsed = _from_text_fallback(text, field)
        if type(parsed) is not datetime:  # an epoch number in a string
            return _from_epoch(parsed, text, field)
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{field}: out of range once converted to UTC: {preview(text)}") from None


def _from_text_fallback(text: str, field: str) -> datetime | float:
    try:
        return float(text)
    except ValueError:
        pass
    if text[-1:] in ("Z", "z"):  # Python 3.10's fromisoformat does not know "Z"
        try:
            return datetime.fromisoformat(text[:-1] + "+00:00")
        except ValueError:
            pass
    raise ValueError(f"{field}: not an ISO-8601 date-time nor an epoch number: {preview(text)}")


def _from_epoch(number: int | float, original: Any, field: str) -> datetime:
    magnitude = abs(number)
    if not magnitude < math.inf:  # NaN and infinity; int magnitudes always pass
        raise ValueError(f"{field}: not a finite epoch number: {preview(original)}")
    try:
        if magnitude < _MILLIS_FROM:
            return datetime.fromtimestamp(number, UTC)
        if magnitude < _MICROS_FROM:
            return _scaled(number, 1_000)
        if magnitude < _NANOS_FROM:
            return _scaled(number, 1_000_000)
        return _scaled(number, 1_000_000_000)
    except (OverflowError, OSError, ValueError):
        raise ValueError(f"{field}: epoch number out of range (years 1..9999): {preview(original)}") from None


def _scaled(number: int | float, per_second: int) -> datetime:
    if type(number) is int:
        # Exact integer arithmetic: a float division would round some values.
        return _EPOCH + timedelta(0, 0, number * 1_000_000 // per_second)
    return datetime.fromtimestamp(number / per_second, UTC)


def _from_epoch_ms(millis: int, field: str) -> datetime:
    try:
        return _scaled(int(millis), 1_000)
    except (OverflowError, OSError, ValueError):
        raise ValueError(f"{field}: Kafka timestamp out of range: {preview(millis)}") from None
