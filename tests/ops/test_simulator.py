"""The fleet simulator as a pure generator: contracts, value ranges, imperfections, determinism."""
from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import datetime, timezone

import orjson
import pytest

from sinkframe.errors import RecordError
from sinkframe.mapping import KafkaRecord
from sinkframe.mapping.decode import decode_json_object
from sinkframe.simulator import DEFAULT_TOPICS, KINDS, Fleet
from sinkframe.simulator.fleet import BREAKER, LATE_SECONDS
from sinkframe.simulator.produce import TokenBucket
from sinkframe_plugins.enriched import EnrichedMapper
from sinkframe_plugins.raw import RawMapper
from sinkframe_plugins.smart_breaker import SmartBreakerMapper

T0 = datetime(2026, 3, 2, tzinfo=timezone.utc).timestamp()  # a Monday, 00:00 UTC
MAPPERS = {"raw": RawMapper(), "enriched": EnrichedMapper(), "smart_breaker": SmartBreakerMapper()}


def map_message(kind, key, value, offset=0):
    """What the connector does with a message: decode, then map; raises RecordError or ValueError."""
    record = KafkaRecord(DEFAULT_TOPICS[kind], 0, offset, int(T0 * 1000), key, decode_json_object(value))
    return MAPPERS[kind].map(record)


def breaker_readings(fleet, start, end, interval):
    """(device, time, measurements) of every smart_breaker message, in order."""
    by_id = {d.device_id: d for d in fleet.fleet}
    for message in fleet.history(start, end, interval):
        if message.kind == "smart_breaker":
            body = orjson.loads(message.value)
            t = datetime.fromisoformat(body["timestamp"].replace("Z", "+00:00")).timestamp()
            yield by_id[body["device_id"]], t, body["measurements"]


def test_every_message_follows_its_mapper_contract():
    fleet = Fleet(devices=30, seed=3)
    rows = defaultdict(int)
    for offset, message in enumerate(fleet.history(T0, T0 + 3600, 60)):
        for row in map_message(*message, offset=offset):
            rows[row.role] += 1
    assert rows["raw"] == rows["enriched"] == 30 * 60
    breakers = sum(1 for d in fleet.fleet if d.device_type == BREAKER)
    assert rows["measurements"] == breakers * 60
    assert 0 < breakers < 30 and rows["device_metadata"] > 0
    assert fleet.messages_per_tick == len(list(fleet.messages(T0)))


def test_values_are_realistic():
    fleet = Fleet(devices=40, seed=7, late_rate=0, out_of_order_rate=0, trip_rate=0)
    readings = list(breaker_readings(fleet, T0, T0 + 2 * 86400, 300))
    assert readings
    for device, _, m in readings:
        for phase in "abc":
            assert abs(m[f"voltage_phase_{phase}"] / device.nominal_v - 1) < 0.06
            assert 0 <= m[f"current_phase_{phase}"] < 1.3 * device.rated_a
        assert abs(m["frequency"] - device.frequency) < 0.1
        assert 0.5 <= m["power_factor"] <= 1.0
        assert 5 < m["temperature"] < 90
        assert m["active_power"] >= 0 and m["breaker_status"] == "closed"
    # Energy only grows, per device.
    energy = defaultdict(list)
    for device, _, m in readings:
        energy[device.device_id].append(m["energy_kwh"])
    assert all(e == sorted(e) and e[-1] > e[0] for e in energy.values())


def test_load_and_temperature_follow_the_daily_pattern():
    fleet = Fleet(devices=40, seed=11, late_rate=0, out_of_order_rate=0, trip_rate=0)
    night, evening, currents, temperatures = [], [], [], []
    for device, t, m in breaker_readings(fleet, T0, T0 + 86400, 300):
        share = m["current_phase_a"] / device.rated_a
        hour = ((t / 3600) + device.utc_offset_h) % 24
        if device.profile == "residential" and 2 <= hour < 4:
            night.append(share)
        if device.profile == "residential" and 19 <= hour < 21:
            evening.append(share)
        currents.append(share)
        temperatures.append(m["temperature"] - device.ambient_c)
    assert statistics.mean(evening) > 2 * statistics.mean(night)
    assert statistics.correlation(currents, temperatures) > 0.5


def test_breakers_trip_and_stay_off_for_a_while():
    fleet = Fleet(devices=20, seed=5, sensor_share=0, trip_rate=0.01, late_rate=0, out_of_order_rate=0)
    tripped = [(d, t, m) for d, t, m in breaker_readings(fleet, T0, T0 + 6 * 3600, 10)
               if m["breaker_status"] == "tripped"]
    assert tripped
    for _, _, m in tripped:
        assert m["current_phase_a"] == m["current_phase_b"] == m["current_phase_c"] == 0.0
        assert m["active_power"] == 0.0
    assert max(d.trip_count for d in fleet.fleet) >= 2
    # A trip lasts 30 s to 5 min: with readings every 10 s, tripped readings come in runs.
    assert len(tripped) > 3 * sum(d.trip_count for d in fleet.fleet) / 2


def test_malformed_messages_are_rejected_and_the_others_are_not():
    fleet = Fleet(devices=50, seed=1, malformed_rate=0.1)
    bad = good = 0
    for offset, message in enumerate(fleet.history(T0, T0 + 40 * 60, 60)):
        try:
            map_message(*message, offset=offset)
            good += 1
        except (RecordError, ValueError):
            bad += 1
    total = bad + good
    malformed = sum(n for (_, tag), n in fleet.counts.items() if tag == "malformed")
    assert bad == malformed
    assert 0.085 < bad / total < 0.115
    assert sum(fleet.counts.values()) == total


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_of_defect_is_rejected(kind):
    fleet = Fleet(devices=1, sensor_share=0, kinds=(kind,), seed=2)
    seen = set()
    for _ in range(300):
        value = fleet._malformed(kind, fleet.fleet[0], T0)
        seen.add(value)
        with pytest.raises((RecordError, ValueError)):
            map_message(kind, b"k", value)
    assert len(seen) >= 7


def test_late_and_out_of_order_rates():
    fleet = Fleet(devices=100, seed=9, late_rate=0.05, out_of_order_rate=0.05, kinds=("raw",))
    previous, late, out_of_order, total = {}, 0, 0, 0
    for tick in range(100):
        now = T0 + tick
        for message in fleet.messages(now):
            body = orjson.loads(message.value)
            t = body["timestamp"] / 1000
            total += 1
            if t < now - LATE_SECONDS[0] + 1:
                late += 1
            elif body["device_id"] in previous and t < previous[body["device_id"]]:
                out_of_order += 1
            previous[body["device_id"]] = max(t, previous.get(body["device_id"], t))
    assert 0.035 < late / total < 0.065
    assert 0.035 < out_of_order / total < 0.065
    assert fleet.counts[("raw", "late")] == late


def test_same_seed_same_bytes_different_seed_different_fleet():
    def run(seed):
        fleet = Fleet(devices=10, seed=seed, malformed_rate=0.05)
        return list(fleet.history(T0, T0 + 600, 30))

    assert run(4) == run(4)
    assert run(4) != run(5)


def test_kinds_select_topics_and_bad_options_are_refused():
    only = Fleet(devices=10, kinds=("smart_breaker",), seed=1)
    assert {m.kind for m in only.messages(T0)} == {"smart_breaker"}
    with pytest.raises(ValueError, match="unknown message kind"):
        Fleet(kinds=("raw", "mqtt"))
    with pytest.raises(ValueError, match="malformed_rate"):
        Fleet(malformed_rate=1.5)


def test_token_bucket_paces_to_the_rate():
    bucket = TokenBucket(1000.0)
    assert bucket.wait_time() == 0.0  # the first token is there
    waits = [bucket.wait_time() for _ in range(5)]
    assert all(0 < w <= 0.0011 for w in waits)
    assert TokenBucket(None).wait_time() == 0.0
