"""Property-based: each built-in mapper's `map_batch` gives exactly what `map_each` gives.

Batches mix ordinary messages (shaped as the fleet simulator and the benchmark
send them) with perturbed ones (a field missing, null, of another type, a
numeric string, a huge integer, an epoch or odd ISO timestamp, an extra key, a
NUL, a duplicate key, an escaped key, invalid UTF-8, deep nesting) and hostile
bytes (tombstones, random bytes, JSON that is no object). Rows must be equal
value for value and type for type, in the same roles and order, with the same
record_index; rejections must be equal (index, stage, error class, reason).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

from sinkframe.mapping.batch import MappedBatch, RecordBatch, map_each
from sinkframe_plugins.enriched import EnrichedMapper
from sinkframe_plugins.raw import RawMapper
from sinkframe_plugins.smart_breaker import FLOAT_MEASUREMENTS, SmartBreakerMapper

CONFIGS = {
    RawMapper: [{}],
    EnrichedMapper: [{}, {"update_device_metadata": False}],
    SmartBreakerMapper: [{"update_device_metadata": u, "strict_device_type": s} for u in (True, False)
                         for s in (False, True)],
}


# -- comparing results ---------------------------------------------------------------
def normalised(value: Any) -> list[tuple]:
    """A value as a flat list of tokens with each exact type spelled out, so that 1 != 1.0, -0.0 != 0.0
    and Jsonb compares by .obj. Flat, and built without recursion: the hostile inputs nest about a
    thousand deep, which a recursive walk or a nested comparison takes past Python's recursion limit
    once the test runner's own frames are below it (pytest-xdist's are)."""
    tokens: list[tuple] = []
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, Jsonb):
            tokens.append(("Jsonb",))
            pending.append(item.obj)
        elif type(item) is float:
            tokens.append(("float", "nan" if math.isnan(item) else item.hex()))
        elif type(item) is datetime:
            tokens.append(("datetime", item.isoformat(), repr(item.tzinfo)))
        elif type(item) is dict:
            tokens.append(("dict", len(item)))
            for key, inner in reversed(item.items()):  # popped back in order: key, then its value
                pending += [inner, key]
        elif type(item) in (list, tuple):
            tokens.append((type(item).__name__, len(item)))
            pending += reversed(item)
        else:
            tokens.append((type(item).__name__, item))
    return tokens


def assert_same_mapping(fast: MappedBatch, reference: MappedBatch) -> None:
    assert list(fast.roles) == list(reference.roles)
    for role, expected in reference.roles.items():
        got = fast.roles[role]
        assert got.record_index == expected.record_index, role
        assert len(got.columns) == len(expected.columns), role
        for n, (column, want) in enumerate(zip(got.columns, expected.columns)):
            assert type(column) is list, (role, n)
            assert [normalised(v) for v in column] == [normalised(v) for v in want], (role, n)
    assert fast.rejected == reference.rejected


def batch_of(values: list[bytes | None], kafka_ms: list[int | None]) -> RecordBatch:
    batch = RecordBatch("prop.topic")
    for offset, (value, ms) in enumerate(zip(values, kafka_ms)):
        batch.append(value, b"key", offset % 3, 1000 + offset, ms)
    return batch


def check_all_configs(mapper_class, batch: RecordBatch) -> None:
    for config in CONFIGS[mapper_class]:
        mapper = mapper_class(config)
        assert_same_mapping(mapper.map_batch(batch), map_each(mapper, batch))


# -- encoding what orjson.dumps cannot: raw JSON text, repeated keys, huge ints ------
@dataclass(frozen=True)
class RawJSON:
    text: bytes


@dataclass(frozen=True)
class Pairs:
    """A JSON object that may repeat a key; keys may be RawJSON (escaped spellings)."""

    items: tuple


def encode(value: Any, ascii_only: bool = True) -> bytes:
    if isinstance(value, RawJSON):
        return value.text
    if isinstance(value, (dict, Pairs)):
        items = value.items if isinstance(value, Pairs) else value.items()
        return b"{" + b",".join(encode(k, ascii_only) + b":" + encode(v, ascii_only) for k, v in items) + b"}"
    if isinstance(value, list):
        return b"[" + b",".join(encode(v, ascii_only) for v in value) + b"]"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    return json.dumps(value).encode()  # None, bools, any int, floats (NaN and Infinity as invalid JSON)


# -- values ---------------------------------------------------------------------------
RAW_ODDITIES = [b"1e400", b"-1e400", b"-0", b"-0.0", b"1e-400", b"1" + b"0" * 400, b"18446744073709551615",
                b"18446744073709551616", b"-9223372036854775809", b"9223372036854775808", b'"\xff"', b'"\\ud800"',
                b'"\\u0000"', b'"\\u00e9"', b'"a\\u0000b"', b"[" * 1030 + b"]" * 1030, b"[" * 990 + b"]" * 990,
                b'{"a":' * 600 + b"1" + b"}" * 600, b"NaN", b"Infinity", b"01", b"1.", b'"\x01"', b"true", b"null"]
odd_scalars = st.sampled_from([None, True, False, 0, -1, 3, 3.0, 3.5, 2**31, -(2**31) - 1, 2**63, 2**64, 2**70,
                               -(2**63) - 1, 10**30, 1e308, -0.0, 5e-324, "", " ", "\x00", "a\x00b", "nan", "NaN",
                               "inf", "-Infinity", "1e400", "230.5", "7", " 7 ", "0x10", "true", "\U0001f680", "\ud800",
                               "smart_breaker", "closed", math.nan, math.inf])
json_scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8)
                | odd_scalars | st.sampled_from(RAW_ODDITIES).map(RawJSON))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)
realistic_floats = st.floats(-1e6, 1e6, allow_nan=False).map(lambda x: round(x, 3)) | st.floats(allow_nan=False,
                                                                                                 allow_infinity=False)
epochs = st.one_of(st.integers(-(10**19), 10**19), st.floats(-1e19, 1e19), st.sampled_from(
    [0, 1, -1, 99_999_999_999, 100_000_000_000, 10**14 - 1, 10**14, 10**17 - 1, 10**17, 1_714_564_800,
     1_714_564_800_123, 1_714_564_800_123_456, 1_714_564_800_123_456_789, 253_402_300_800, -62_135_596_801,
     1.5e9, 1.5e12, math.nan, math.inf]))


@st.composite
def iso_timestamps(draw) -> str:
    date = draw(st.sampled_from(["2024-05-01", "0001-01-01", "9999-12-31", "2024-02-30", "20240501", "2024-5-1"]))
    text = date + draw(st.sampled_from(["T", " ", "t"])) + draw(st.sampled_from(["12:00:00", "00:00", "23:59:59",
                                                                              "12", "25:00:00"]))
    digits = draw(st.integers(0, 10))
    if digits:
        text += draw(st.sampled_from([".", ","])) + "".join(draw(st.lists(st.sampled_from("0123456789"),
                                                                           min_size=digits, max_size=digits)))
    text += draw(st.sampled_from(["", "Z", "z", "+00:00", "+05:30", "-08:00", "+14:00", "-23:59", "+0530", "+05",
                                  " Z", "UTC"]))
    return text if draw(st.booleans()) else draw(st.sampled_from(["", "yesterday", "1714564800", "1714564800.5",
                                                                  "nan", "１２３", text + "x"]))


timestamps = st.one_of(iso_timestamps(), epochs, st.sampled_from([None, True, [], {}, "  "]),
                       epochs.map(lambda n: str(n)))


# -- ordinary messages, then perturbed -------------------------------------------------
@st.composite
def breaker_measurements(draw) -> dict:
    values = {name: draw(realistic_floats) for name in FLOAT_MEASUREMENTS}
    values["breaker_status"] = draw(st.sampled_from(["closed", "open", "tripped"]))
    values["trip_count"] = draw(st.integers(0, 40))
    names = list(values)
    order = draw(st.permutations(names))
    return {name: values[name] for name in order}


@st.composite
def device_metadata(draw) -> dict:
    return {"manufacturer": draw(st.sampled_from(["ABB", "Acme Electric", "Vaisala"])),
            "model": draw(st.sampled_from(["S800-SB", "SB-203"])), "firmware_version": "2.3.1",
            "location": draw(st.sampled_from(["Plant North / Building A / Panel 3", "Head Office"])),
            "capabilities": ["metering", "remote_trip", "thermal_monitoring"]}


def iso_now(draw) -> str:
    ms = draw(st.integers(1_600_000_000_000, 1_900_000_000_000))
    stamp = datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="milliseconds")
    return stamp if draw(st.booleans()) else stamp.replace("+00:00", "Z")


@st.composite
def ordinary_message(draw, kind: str) -> dict:
    device = draw(st.sampled_from(["breaker-00001", "sensor-00042", "breaker-00999"]))
    if kind == "raw":
        payload = draw(breaker_measurements() | st.fixed_dictionaries(
            {"temperature": realistic_floats, "humidity": realistic_floats, "co2_ppm": st.integers(0, 3000),
             "battery_pct": st.integers(0, 100)}))
        return {"device_id": device, "timestamp": draw(st.integers(1_600_000_000_000, 1_900_000_000_000)),
                "topic": f"devices/{device}/telemetry", "payload": payload}
    message = {"device_id": device, "timestamp": iso_now(draw),
               "device_type": "smart_breaker" if kind == "smart_breaker" else draw(
                   st.sampled_from(["smart_breaker", "env_sensor"]))}
    if kind == "enriched":
        message.update(payload=draw(breaker_measurements()), metadata=draw(device_metadata()),
                       fdi_package={"package_id": "fdi-breaker-1234", "version": "1.4.0"})
    else:
        message["measurements"] = draw(breaker_measurements())
        if draw(st.booleans()):
            message.update(metadata=draw(device_metadata()),
                           fdi_package={"package_id": "fdi-breaker-1234", "version": "1.4.0"})
    return message


def _objects_in(message: dict) -> list[dict]:
    """The message and its object values (measurements, payload, metadata, fdi_package)."""
    return [message] + [v for v in message.values() if type(v) is dict]


def near_values(value: Any) -> list:
    """Values close to `value` that a fast path could mistake for it, or must refuse."""
    # 10**20 + 123_456: beyond 64 bits, where orjson gives a float that has lost the last digits
    common = [None, True, RawJSON(b'"\\ud800"'), RawJSON(b'"\xff"'), RawJSON(b"1e400"), 10**20 + 123_456]
    if type(value) is float and math.isfinite(value):
        return common + [int(value), str(value), -value, RawJSON(b"-0"), RawJSON(repr(value).encode() + b"e0"),
                         RawJSON(b"1" + b"0" * 400), 2**64, 10**30, -(2**63) - 1, "nan", "-inf", math.nan, 1e300 * 1e10]
    if type(value) is int:
        return common + [float(value), value + 0.5, str(value), 2**31 - 1, 2**31, -(2**31), 2**63, 2**64,
                         -(2**63) - 1, RawJSON(str(value).encode() + b".0")]
    if type(value) is str:
        escaped = RawJSON(json.dumps(value).encode().replace(b"e", b"\\u0065"))
        return common + ["", " ", value + "\x00", "\x00", value.upper(), value + "\u00e9", escaped, 42, 4.5,
                         {"x": value}, [value]]
    return common + ["text", [], {}, [1, "a"], {"location": {"lat": 1.5}}, {"capabilities": {"a": [1]}}]


NEW_KEYS = ["custom", "humidity", "", "\u00e9", "device_type", "metadata", "fdi_package", "topic", "payload",
            "measurements", "timestamp", *FLOAT_MEASUREMENTS, "breaker_status", "trip_count", "location",
            "capabilities", "manufacturer", "package_id", "version"]


@st.composite
def perturbed(draw, message: dict) -> Any:
    """The message with one to three small changes, sometimes a repeated or escaped key."""
    message = json.loads(json.dumps(message))  # a deep copy
    for _ in range(draw(st.integers(1, 3))):
        target = draw(st.sampled_from(_objects_in(message)))
        key = draw(st.sampled_from(list(target) or ["device_id"]))
        action = draw(st.sampled_from(["near"] * 5 + ["drop", "new", "new", "timestamp", "lift", "wild"]))
        if action == "near":
            target[key] = draw(st.sampled_from(near_values(target.get(key))))
        elif action == "drop":
            target.pop(key, None)
        elif action == "new":
            target[draw(st.sampled_from(NEW_KEYS))] = draw(json_scalars | st.sampled_from(near_values(None)))
        elif action == "timestamp":
            message["timestamp"] = draw(timestamps)
        elif action == "lift":  # some or all measurements at the top level instead
            source = message.pop("measurements", None)
            if type(source) is dict:
                moved = dict(list(source.items())[: draw(st.integers(0, len(source)))])
                message.update(moved)
                if len(moved) < len(source) or draw(st.booleans()):
                    message["measurements"] = {k: v for k, v in source.items() if k not in moved}
        else:
            target[key] = draw(json_values)
    return with_repeated_keys(draw, message) if draw(st.integers(0, 5)) == 0 else message


def with_repeated_keys(draw, message: dict) -> Pairs:
    """The message with one key repeated (another value, first or last) or spelled with an escape."""
    items = list(message.items())
    if not items:
        return Pairs(())
    key, value = draw(st.sampled_from(items))
    if type(value) is dict and value and draw(st.booleans()):
        inner = with_repeated_keys(draw, value)
        return Pairs(tuple((k, inner if k == key else v) for k, v in items))
    other = draw(json_scalars | st.just(value) | st.sampled_from([v for _, v in items]))
    spelled = RawJSON(b'"\\u00' + key[:1].encode().hex().encode() + key[1:].encode() + b'"') if (
        key and key[0].isascii() and draw(st.booleans())) else key
    extra = (spelled, other)
    return Pairs(tuple(items + [extra]) if draw(st.booleans()) else tuple([extra] + items))


@st.composite
def message_bytes(draw, kind: str) -> bytes | None:
    choice = draw(st.integers(0, 19))
    if choice == 0:
        return None  # a tombstone
    if choice == 1:
        return draw(st.binary(max_size=30))
    if choice == 2:
        return encode(draw(json_values))
    base = draw(ordinary_message(kind))
    message = base if choice < 8 else draw(perturbed(base))
    data = encode(message, ascii_only=draw(st.booleans()))
    if draw(st.integers(0, 15)) == 0:  # damage the bytes themselves
        data = draw(st.sampled_from([data[:-1], data + b"x", b"\xef\xbb\xbf" + data, b" \n" + data + b"\t ",
                                     data.replace(b'"', b"'", 1), data[: len(data) // 2]]))
    return data


def batches(kind: str):
    return st.lists(st.tuples(message_bytes(kind), st.one_of(st.none(), st.just(-1),
                                                             st.integers(0, 2_000_000_000_000))),
                    min_size=0, max_size=12)


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                              HealthCheck.data_too_large])


@SETTINGS
@given(records=batches("smart_breaker"))
def test_smart_breaker_map_batch_equals_map_each(records):
    check_all_configs(SmartBreakerMapper, batch_of([v for v, _ in records], [t for _, t in records]))


@SETTINGS
@given(records=batches("enriched"))
def test_enriched_map_batch_equals_map_each(records):
    check_all_configs(EnrichedMapper, batch_of([v for v, _ in records], [t for _, t in records]))


@SETTINGS
@given(records=batches("raw"))
def test_raw_map_batch_equals_map_each(records):
    check_all_configs(RawMapper, batch_of([v for v, _ in records], [t for _, t in records]))


# -- every single change to one ordinary message, exhaustively --------------------------
ORDINARY = {
    "raw": {"device_id": "breaker-00007", "timestamp": 1_735_689_600_000, "topic": "devices/breaker-00007/telemetry",
            "payload": {"voltage_phase_a": 120.12, "breaker_status": "closed", "trip_count": 0}},
    "enriched": {"device_id": "breaker-00007", "timestamp": "2025-01-01T00:00:00.000Z", "device_type": "smart_breaker",
                 "payload": {"voltage_phase_a": 120.12, "co2_ppm": 516},
                 "metadata": {"manufacturer": "ABB", "model": "S800-SB", "firmware_version": "2.3.1",
                              "location": "Head Office", "capabilities": ["metering", "remote_trip"]},
                 "fdi_package": {"package_id": "fdi-breaker-1234", "version": "1.4.0"}},
    "smart_breaker": {"device_id": "breaker-00007", "timestamp": "2025-01-01T00:00:00.005+00:00",
                      "device_type": "smart_breaker",
                      "measurements": {**{name: 100.5 + n for n, name in enumerate(FLOAT_MEASUREMENTS)},
                                       "breaker_status": "closed", "trip_count": 3},
                      "metadata": {"manufacturer": "ABB", "model": "S800-SB", "firmware_version": "2.3.1",
                                   "location": "Head Office", "capabilities": ["metering", "remote_trip"]},
                      "fdi_package": {"package_id": "fdi-breaker-1234", "version": "1.4.0"}},
}
MAPPERS = {"raw": RawMapper, "enriched": EnrichedMapper, "smart_breaker": SmartBreakerMapper}
NEW_VALUES = [None, 1, 2.5, "x", "a\x00", True, [1], {"k": "v"}, RawJSON(b"1e400"), RawJSON(b'"\xff"')]
SPECIAL_TIMESTAMPS = ["2025-01-01T00:00:00Z", "2025-01-01T00:00:00z", "2025-01-01T00:00:00", "2025-01-01",
                      "2025-01-01T00:00:00.1+05:30", "2025-01-01T00:00:00.123456789Z", "20250101", "1735689600",
                      "1735689600.5", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "nonsense", "",
                      1_735_689_600, 1_735_689_600_000, 1_735_689_600_000_000, 1_735_689_600_000_000_000,
                      1.7e9, 10**20 + 123_456, 2**64 - 1, -1, True, None]


def single_changes(message: dict) -> list[Any]:
    """`message` changed in one place each: every value replaced by each near value, dropped, nulled,
    a key added to every object, the timestamp swapped, measurements lifted, a key repeated."""
    variants = []
    objects = [((), message)] + [((k,), v) for k, v in message.items() if type(v) is dict]
    for path, obj in objects:
        for key, value in obj.items():
            for replacement in [*near_values(value), "__drop__"]:
                variants.append(_changed(message, path, key, replacement))
            for repeat, first in (("\x00", False), ("\x00", True), (value, False)):
                variants.append(Pairs(_pairs_with_repeat(message, path, key, repeat, first)))
        for key in NEW_KEYS:
            if key not in obj:
                variants += [_changed(message, path, key, v) for v in NEW_VALUES]
    variants += [_changed(message, (), "timestamp", t) for t in SPECIAL_TIMESTAMPS]
    if "measurements" in message:
        lifted = {k: v for k, v in message.items() if k != "measurements"}
        variants.append({**lifted, **message["measurements"]})
        for name in message["measurements"]:
            rest = {k: v for k, v in message["measurements"].items() if k != name}
            variants.append({**lifted, "measurements": rest, name: message["measurements"][name]})
    return variants


def _changed(message: dict, path: tuple, key: str, value: Any) -> dict:
    copy = {k: (dict(v) if type(v) is dict else v) for k, v in message.items()}
    obj = copy[path[0]] if path else copy
    if value == "__drop__":
        obj.pop(key)
    else:
        obj[key] = value
    return copy


def _pairs_with_repeat(message: dict, path: tuple, key: str, repeat: Any, first: bool):
    """`message` as pairs, with `key` of the object at `path` given again (as `repeat`), first or last."""
    def with_repeat(items: list) -> tuple:
        return tuple([(key, repeat), *items] if first else [*items, (key, repeat)])

    if not path:
        return with_repeat(list(message.items()))
    return tuple((k, Pairs(with_repeat(list(v.items()))) if k == path[0] else v) for k, v in message.items())


def nested_locations(message: dict) -> list[Any]:
    """`message` with a structured location: repeated keys, odd values, one level too deep."""
    locations = [{"lat": 47.1, "lon": 8.5}, Pairs((("lat", 1.5), ("lon", 2.5), ("lat", "x"))),
                 Pairs((("lat", "\x00"), ("lat", 3))), {"lat": 10**20 + 123_456}, {"site": {"lat": 1}},
                 {"lat": RawJSON(b"1e400")}, {"name": RawJSON(b'"\xff"')}, {}, [1.5, "a"], [[1]],
                 [10**20 + 123_456]]
    if "metadata" not in message:
        return []
    return [{**message, "metadata": {**message["metadata"], field: location}}
            for location in locations for field in ("location", "capabilities")]


def test_every_single_change_to_an_ordinary_message_maps_as_the_per_record_path_does():
    for kind, message in ORDINARY.items():
        variants = [message, *single_changes(message), *nested_locations(message)]
        values = [encode(v) for v in variants] + [encode(v, ascii_only=False) for v in variants]
        check_all_configs(MAPPERS[kind], batch_of(values, [1_700_000_000_000] * len(values)))
