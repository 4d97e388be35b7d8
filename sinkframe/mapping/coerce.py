"""Coercion of JSON measurement values to column types, for mappers.

Each function takes the decoded JSON value and the field name, and returns the
Python value for the column or raises `ValueError` naming the field and the bad
value. JSON `null` (None) passes through as None, so an absent measurement
becomes SQL NULL. Booleans are never numbers here: `true` in a float field is a
producer bug, not 1.0.

These run for every measurement of every message: the common case (a value that
already has the right type) is checked first with an exact `type(...) is` test.
"""
from __future__ import annotations

import math
from typing import Any

PREVIEW_CHARS = 80


def preview(value: Any) -> str:
    """`repr(value)` cut to about 80 characters, for error messages."""
    text = repr(value)
    if len(text) > PREVIEW_CHARS:
        return text[: PREVIEW_CHARS - 3] + "..."
    return text


def _bad(field: str, expected: str, value: Any) -> ValueError:
    return ValueError(f"{field}: expected {expected}, got {type(value).__name__} {preview(value)}")


def as_float(value: Any, field: str) -> float | None:
    """A finite float from an int, float or numeric string; None stays None.

    Rejects bools, NaN and +/-infinity (also as strings such as "nan"), and
    anything else.
    """
    if type(value) is float:
        if math.isfinite(value):
            return value
        raise ValueError(f"{field}: expected a finite number, got {preview(value)}")
    if value is None:
        return None
    if isinstance(value, bool):
        raise _bad(field, "a number", value)
    if isinstance(value, int):
        try:
            return float(value)
        except OverflowError:
            raise ValueError(f"{field}: number too large for double precision: {preview(value)}") from None
    if isinstance(value, (float, str)):
        try:
            number = float(value)
        except ValueError:
            raise _bad(field, "a number", value) from None
        if math.isfinite(number):
            return number
        raise ValueError(f"{field}: expected a finite number, got {preview(value)}")
    raise _bad(field, "a number", value)


_INT_BOUNDS = {16: (-(2**15), 2**15 - 1), 32: (-(2**31), 2**31 - 1), 64: (-(2**63), 2**63 - 1)}


def as_int(value: Any, field: str, *, bits: int = 64) -> int | None:
    """An int from an int, an integral float (3.0) or an integer string; None stays None.

    `bits` (16, 32 or 64) is the width of the PostgreSQL column (smallint,
    integer, bigint): a value that does not fit is rejected here, so that it
    becomes a dead letter for this message instead of failing the whole batch in
    the database. Rejects bools, fractional numbers (3.5), NaN and infinity.
    """
    low, high = _INT_BOUNDS[bits]
    if type(value) is int:
        number = value
    elif value is None:
        return None
    elif isinstance(value, bool):
        raise _bad(field, "an integer", value)
    elif isinstance(value, int):
        number = int(value)
    elif isinstance(value, float):
        if not value.is_integer():  # also False for NaN and infinity
            raise _bad(field, "an integer", value)
        number = int(value)
    elif isinstance(value, str):
        try:
            number = int(value)
        except ValueError:
            number = _integral_float_text(value, field)
    else:
        raise _bad(field, "an integer", value)
    if low <= number <= high:
        return number
    raise ValueError(f"{field}: integer out of range for a {bits}-bit column: {preview(value)}")


def _integral_float_text(value: str, field: str) -> int:
    try:
        number = float(value)
    except ValueError:
        raise _bad(field, "an integer", value) from None
    if not number.is_integer():
        raise _bad(field, "an integer", value)
    return int(number)


def as_text(value: Any, field: str) -> str | None:
    """A str for a text column; None stays None.

    Strings are kept verbatim. Numbers become `str(value)` and bools the
    lowercase JSON spelling ("true"/"false"). Objects and arrays are rejected, as
    are strings with a NUL character (PostgreSQL text cannot store it).
    """
    if type(value) is str:
        if "\x00" in value:
            raise ValueError(f"{field}: text contains a NUL character: {preview(value)}")
        return value
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return repr(value)
        raise ValueError(f"{field}: expected a finite number or text, got {preview(value)}")
    if isinstance(value, str):
        return as_text(str(value), field)
    raise _bad(field, "text", value)
