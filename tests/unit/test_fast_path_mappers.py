"""The built-in mappers' columnar fast paths: which records they take, and that the result is map_each's."""
from __future__ import annotations

from datetime import datetime, timezone

import orjson
import pytest
from psycopg.types.json import Jsonb

from sinkframe.bench.workload import encoded, message
from sinkframe.mapping.batch import RecordBatch, RoleColumns, map_each
from sinkframe.mapping.fastpath import interleaved, take_ordinary
from sinkframe.simulator import Fleet
from sinkframe_plugins.enriched import EnrichedMapper
from sinkframe_plugins.raw import RawMapper
from sinkframe_plugins.smart_breaker import FLOAT_MEASUREMENTS, SmartBreakerMapper

from test_fast_path_properties import CONFIGS, assert_same_mapping

MAPPERS = {"raw": RawMapper, "enriched": EnrichedMapper, "smart_breaker": SmartBreakerMapper}
KAFKA_MS = 1_700_000_000_000


def batch_of(values, kafka_ms=KAFKA_MS) -> RecordBatch:
    batch = RecordBatch("iot.test")
    for offset, value in enumerate(values):
        batch.append(value, None, offset % 2, 500 + offset, kafka_ms)
    return batch


def simulated(kind: str, *, ticks: int = 20, **fleet_options) -> list[bytes]:
    fleet = Fleet(devices=25, seed=11, kinds=(kind,), **fleet_options)
    return [m.value for t in range(ticks) for m in fleet.messages(1_735_689_600.0 + t)]


@pytest.mark.parametrize("kind", sorted(MAPPERS))
def test_simulator_messages_all_take_the_fast_path(kind):
    batch = batch_of(simulated(kind))
    for config in CONFIGS[MAPPERS[kind]]:
        mapper = MAPPERS[kind](config)
        taken = mapper.fast_path(batch)
        assert taken.fallback == []
        assert_same_mapping(mapper.map_batch(batch), map_each(mapper, batch))


def test_benchmark_workload_takes_the_fast_path():
    batch = batch_of([encoded(i) for i in range(3_000)])
    mapper = SmartBreakerMapper({})
    taken = mapper.fast_path(batch)
    assert taken.fallback == [] and not taken.fallbacks
    mapped = mapper.map_batch(batch)
    assert_same_mapping(mapped, map_each(mapper, batch))
    carrying_metadata = [i for i in range(3_000) if "metadata" in message(i)]
    assert carrying_metadata and mapped.roles["device_metadata"].record_index == carrying_metadata


@pytest.mark.parametrize("kind", sorted(MAPPERS))
def test_malformed_simulator_messages_fall_back_and_are_rejected_as_per_record(kind):
    batch = batch_of(simulated(kind, ticks=4, malformed_rate=1.0))
    mapper = MAPPERS[kind]({})
    assert mapper.fast_path(batch).fallback == list(range(len(batch)))
    mapped = mapper.map_batch(batch)
    assert mapped.row_count == 0 and len(mapped.rejected) == len(batch)
    assert sum(mapped.fallbacks.values()) == len(batch) and "bug" not in mapped.fallbacks
    assert_same_mapping(mapped, map_each(mapper, batch))


ORDINARY = orjson.loads(encoded(3))


def breaker(**changes) -> bytes:
    message = {**ORDINARY, "measurements": dict(ORDINARY["measurements"])}
    for key, value in changes.items():
        if key in ORDINARY["measurements"]:
            message["measurements"][key] = value
        elif value is _DROP:
            message.pop(key)
        else:
            message[key] = value
    return orjson.dumps(message)


_DROP = object()
LIFTED = orjson.dumps({k: v for k, v in ORDINARY.items() if k != "measurements"} | ORDINARY["measurements"])

# Each of these is a smart-breaker message the fast path must leave to the per-record path.
FALLS_BACK = {
    "tombstone": None,
    "invalid JSON": b'{"device_id": "breaker-1", ',
    "invalid UTF-8": breaker(device_id="breaker-XX").replace(b"XX", b"\xff"),
    "not an object": b'["breaker-1", 230.5]',
    "numeric string for a float": breaker(voltage_phase_a="230.5"),
    "bool for a float": breaker(current_phase_b=True),
    "null measurement (read from the top level instead)": breaker(temperature=None),
    "measurements at the top level": LIFTED,
    "no measurements at all": breaker(measurements=_DROP),
    "unknown measurement (kept in extra_measurements)": orjson.dumps(
        {**ORDINARY, "measurements": {**ORDINARY["measurements"], "humidity": 41.5}}),
    "unknown top-level key": breaker(site="north"),
    "epoch timestamp": breaker(timestamp=1_735_689_600_000),
    "NUL in device_id": breaker(device_id="breaker\x00-1"),
    "NUL in breaker_status": breaker(breaker_status="clo\x00sed"),
    "blank device_id": breaker(device_id="  "),
    "integer device_id": breaker(device_id=17),
    "trip_count beyond 32 bits": breaker(trip_count=2**31),
    "integral float trip_count": breaker(trip_count=3.0),
    "huge integer in metadata": breaker(metadata={"model": 2**63}),
    "another device_type": breaker(device_type="env_sensor"),
    "nested location": breaker(metadata={"location": {"site": {"lat": 47.1, "lon": 8.5}}}),
    "NUL in metadata": breaker(metadata={"model": "SB\x00"}),
}


def test_what_falls_back_gets_what_map_each_gives_it():
    values = list(FALLS_BACK.values())
    for config in CONFIGS[SmartBreakerMapper]:
        mapper = SmartBreakerMapper(config)
        batch = batch_of(values)
        fell_back = {name for name, i in zip(FALLS_BACK, range(len(values))) if i in mapper.fast_path(batch).fallback}
        if config["update_device_metadata"]:
            assert fell_back == set(FALLS_BACK)
        else:  # metadata is not read at all then: text with a NUL in it is no reason to fall back
            assert fell_back == set(FALLS_BACK) - {"NUL in metadata"}
        assert_same_mapping(mapper.map_batch(batch), map_each(mapper, batch))


def test_fast_path_takes_integers_for_floats_repeated_keys_a_null_timestamp_and_a_structured_location():
    # orjson's int then float() and msgspec's float are the same number; both keep a repeated key's last value
    as_int = breaker(voltage_phase_c=231)
    repeated = breaker(device_id="first")[:-1] + b',"device_id":' + orjson.dumps(ORDINARY["device_id"]) + b"}"
    located = breaker(metadata={"location": {"lat": 47.1, "lon": 8.5}, "capabilities": ["trip"]})
    mapper = SmartBreakerMapper({})
    batch = batch_of([as_int, repeated, breaker(timestamp=None), located])
    assert mapper.fast_path(batch).fallback == []
    mapped = mapper.map_batch(batch)
    assert_same_mapping(mapped, map_each(mapper, batch))
    assert mapped.roles["measurements"].columns[1 + 1 + FLOAT_MEASUREMENTS.index("voltage_phase_c")][0] == 231.0
    assert mapped.roles["measurements"].columns[1] == [ORDINARY["device_id"]] * 4
    assert mapped.roles["measurements"].columns[0][2] == datetime.fromtimestamp(KAFKA_MS / 1000, timezone.utc)
    assert mapped.roles["device_metadata"].columns[5][-1] == '{"lat":47.1,"lon":8.5}'


def test_rows_of_fallen_back_records_are_spliced_into_record_order():
    values = [breaker(), LIFTED, breaker(), b"not json", LIFTED, LIFTED, breaker(device_id="breaker-9")]
    mapper = SmartBreakerMapper({})
    batch = batch_of(values)
    assert mapper.fast_path(batch).fallback == [1, 3, 4, 5]
    mapped = mapper.map_batch(batch)
    assert mapped.roles["measurements"].record_index == [0, 1, 2, 4, 5, 6]
    assert [r.index for r in mapped.rejected] == [3]
    assert_same_mapping(mapped, map_each(mapper, batch))


def test_interleaved_keeps_record_order():
    fast = RoleColumns([["a", "c", "f"], [0, 2, 5]], [0, 2, 5])
    slow = RoleColumns([["b", "d", "e", "g"], [1, 3, 4, 6]], [1, 3, 4, 6])
    merged = interleaved(fast, slow)
    assert merged.columns == [list("abcdefg"), list(range(7))]
    assert merged.record_index == list(range(7))
    assert interleaved(fast, RoleColumns.empty(2)) is fast
    assert interleaved(RoleColumns.empty(2), slow) is slow


@pytest.mark.parametrize("kind", sorted(MAPPERS))
def test_empty_batch_has_every_role(kind):
    mapper = MAPPERS[kind]({})
    mapped = mapper.map_batch(batch_of([]))
    assert list(mapped.roles) == list(mapper.targets) and mapped.row_count == 0 and not mapped.rejected


def test_metadata_rows_only_for_messages_that_carry_metadata():
    with_metadata = breaker(metadata={"manufacturer": "ABB", "location": "Plant 2", "capabilities": ["trip"]},
                            fdi_package={"package_id": "fdi-1", "version": "1.0"})
    without = breaker(metadata=_DROP, fdi_package=_DROP)
    batch = batch_of([without, with_metadata, without])
    mapped = SmartBreakerMapper({}).map_batch(batch)
    metadata = mapped.roles["device_metadata"]
    assert metadata.record_index == [1]
    row = next(metadata.rows())
    seen = datetime.fromisoformat(ORDINARY["timestamp"]).astimezone(timezone.utc)
    assert row[:6] == (ORDINARY["device_id"], "smart_breaker", "ABB", None, None, "Plant 2")
    assert isinstance(row[6], Jsonb) and row[6].obj == ["trip"]
    assert row[7:] == ("fdi-1", "1.0", seen, seen)
    without_metadata_rows = SmartBreakerMapper({"update_device_metadata": False}).map_batch(batch)
    assert len(without_metadata_rows.roles["device_metadata"]) == 0


def test_each_fallback_is_counted_by_its_reason():
    values = [encoded(0), None, b"{not json", breaker(timestamp="yesterday"), breaker(unknown_key=1), encoded(1)]
    mapped = SmartBreakerMapper({}).map_batch(batch_of(values))
    assert dict(mapped.fallbacks) == {"tombstone": 1, "decode": 1, "check": 1, "shape": 1}


def test_a_fast_path_bug_is_logged_once_counted_and_the_records_still_map(caplog):
    class Buggy(RawMapper):
        def fast_path(self, batch):
            return take_ordinary(self, batch, lambda value, ms: {}["a bug"], "raw")

    mapper = Buggy({})
    batch = batch_of(simulated("raw", ticks=2))
    with caplog.at_level("ERROR", logger="sinkframe.mapping.fastpath"):
        first, second = mapper.map_batch(batch), mapper.map_batch(batch)
    assert first.fallbacks == second.fallbacks == {"bug": len(batch)}
    assert_same_mapping(first, map_each(mapper, batch))  # the per-record path mapped them all
    bugs = [r for r in caplog.records if "failed unexpectedly" in r.getMessage()]
    assert len(bugs) == 1 and bugs[0].exc_info[0] is KeyError
