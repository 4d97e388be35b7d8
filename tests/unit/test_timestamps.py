"""parse_timestamp and the measurement coercions in sinkframe.mapping.coerce."""
from __future__ import annotations

import math
from datetime import datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sinkframe.mapping.coerce import as_float, as_int, as_text, preview
from sinkframe.mapping.timestamps import UTC, parse_timestamp

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
T0_S = 1714564800
KAFKA_MS = 1_700_000_000_123


def ts(value, fallback_ms=None):
    return parse_timestamp(value, fallback_ms=fallback_ms)


@pytest.mark.parametrize(
    "value, expected",
    [
        ("2024-05-01T12:00:00Z", T0),
        ("2024-05-01T12:00:00z", T0),
        ("2024-05-01T12:00:00+00:00", T0),
        ("2024-05-01T17:30:00+05:30", T0),
        ("2024-05-01T07:00:00-05:00", T0),
        ("2024-05-01T12:00:00.250Z", T0 + timedelta(milliseconds=250)),
        ("2024-05-01 12:00:00Z", T0),
        ("2024-05-01T12:00:00", T0),  # naive: taken as UTC
        ("2024-05-01", datetime(2024, 5, 1, tzinfo=UTC)),
    ],
)
def test_iso_strings(value, expected):
    result = ts(value)
    assert result == expected
    assert result.tzinfo is UTC


def test_offset_is_converted_not_dropped():
    result = ts("2024-05-01T17:30:00+05:30")
    assert (result.hour, result.minute, result.utcoffset()) == (12, 0, timedelta(0))


@pytest.mark.parametrize(
    "value, expected",
    [
        (T0_S, T0),  # seconds
        (T0_S * 1000, T0),  # milliseconds
        (T0_S * 1000 + 123, T0 + timedelta(milliseconds=123)),
        (T0_S * 1_000_000 + 7, T0 + timedelta(microseconds=7)),  # microseconds
        (T0_S * 1_000_000_000 + 5_000, T0 + timedelta(microseconds=5)),  # nanoseconds
        (T0_S + 0.5, T0 + timedelta(milliseconds=500)),  # float seconds
        (T0_S * 1000.0 + 250.0, T0 + timedelta(milliseconds=250)),  # float milliseconds
        (0, datetime(1970, 1, 1, tzinfo=UTC)),
        (-86400, datetime(1969, 12, 31, tzinfo=UTC)),
        (99_999_999_999, datetime.fromtimestamp(99_999_999_999, UTC)),  # just below 1e11: seconds
        (100_000_000_000, datetime(1973, 3, 3, 9, 46, 40, tzinfo=UTC)),  # 1e11: milliseconds
        (str(T0_S), T0),
        (str(T0_S * 1000), T0),
        (f"{T0_S}.5", T0 + timedelta(milliseconds=500)),
        ("20240131", datetime.fromtimestamp(20240131, UTC)),  # all digits: epoch, not a date
    ],
)
def test_epoch_numbers(value, expected):
    result = ts(value)
    assert result == expected
    assert result.tzinfo is UTC


def test_integer_milliseconds_are_exact():
    # 1_700_000_000_123 / 1000 is not exact in binary floating point.
    assert ts(KAFKA_MS).microsecond == 123_000


def test_missing_timestamp_uses_kafka_timestamp():
    assert ts(None, KAFKA_MS) == datetime(2023, 11, 14, 22, 13, 20, 123_000, tzinfo=UTC)


def test_kafka_timestamp_is_always_milliseconds():
    assert ts(None, 5_000) == datetime(1970, 1, 1, 0, 0, 5, tzinfo=UTC)


def test_message_timestamp_wins_over_kafka_timestamp():
    assert ts("2024-05-01T12:00:00Z", KAFKA_MS) == T0


@pytest.mark.parametrize("fallback", [None, -1])
def test_missing_both_is_an_error(fallback):
    with pytest.raises(ValueError, match="timestamp: missing"):
        ts(None, fallback)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "yesterday",
        "2024-13-01T00:00:00Z",
        "2024-05-01T25:00:00Z",
        "nan",
        "inf",
        True,
        False,
        math.nan,
        math.inf,
        -math.inf,
        10**30,
        -(7 * 10**13),  # before year 1 as milliseconds
        1e30,
        [T0_S],
        {"seconds": T0_S},
        "9999-12-31T23:00:00-05:00",  # past year 9999 in UTC
        "0001-01-01T00:00:00+01:00",
    ],
)
def test_invalid_values(value):
    with pytest.raises(ValueError, match="^timestamp: .*") as caught:
        ts(value, KAFKA_MS)
    assert preview(value) in str(caught.value)


def test_error_message_truncates_long_values():
    with pytest.raises(ValueError) as caught:
        ts("x" * 500)
    assert len(str(caught.value)) < 160
    assert "..." in str(caught.value)


def test_field_name_in_errors():
    with pytest.raises(ValueError, match="^reading_time: "):
        parse_timestamp("nope", fallback_ms=None, field="reading_time")


@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(5000, 1, 1), timezones=st.just(UTC)))
def test_iso_round_trip(moment):
    assert ts(moment.isoformat()) == moment


@given(st.integers(min_value=-(10**9), max_value=10**11 - 1))
def test_integer_seconds_and_milliseconds_agree(seconds):
    millis = seconds * 1000
    if abs(millis) >= 1e11 and abs(millis) < 1e14:
        assert ts(millis) == ts(seconds)


# --- coercions -------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected", [(1.5, 1.5), (2, 2.0), ("3.25", 3.25), (" 4 ", 4.0), (-0.0, 0.0), (None, None)]
)
def test_as_float_accepts(value, expected):
    result = as_float(value, "voltage")
    assert result == expected
    assert result is None or type(result) is float


@pytest.mark.parametrize(
    "value", [True, False, math.nan, math.inf, -math.inf, "nan", "Infinity", "abc", "", [1.0], {"v": 1}, 10**400]
)
def test_as_float_rejects_naming_field_and_value(value):
    with pytest.raises(ValueError) as caught:
        as_float(value, "voltage_phase_a")
    message = str(caught.value)
    assert message.startswith("voltage_phase_a: ")
    assert preview(value) in message


@pytest.mark.parametrize(
    "value, expected", [(3, 3), (3.0, 3), ("7", 7), ("7.0", 7), (-2, -2), (None, None), (2**31 - 1, 2**31 - 1)]
)
def test_as_int_accepts(value, expected):
    result = as_int(value, "trip_count", bits=32)
    assert result == expected
    assert result is None or type(result) is int


@pytest.mark.parametrize("value", [3.5, "3.5", True, math.nan, math.inf, "three", 2**31, -(2**31) - 1, [3]])
def test_as_int_rejects(value):
    with pytest.raises(ValueError, match="^trip_count: "):
        as_int(value, "trip_count", bits=32)


def test_as_int_default_width_is_bigint():
    assert as_int(2**40, "n") == 2**40
    with pytest.raises(ValueError):
        as_int(2**63, "n")


@pytest.mark.parametrize(
    "value, expected",
    [
        ("closed", "closed"),
        ("Ünïcødé \"'", "Ünïcødé \"'"),
        (True, "true"),
        (False, "false"),
        (1, "1"),
        (1.5, "1.5"),
        (None, None),
    ],
)
def test_as_text(value, expected):
    assert as_text(value, "breaker_status") == expected


@pytest.mark.parametrize("value", [{"a": 1}, ["open"], math.nan, "nul\x00byte"])
def test_as_text_rejects(value):
    with pytest.raises(ValueError, match="^breaker_status: "):
        as_text(value, "breaker_status")
