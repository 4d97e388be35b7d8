"""`Fleet(degrading=N)`: failing contacts that end in a thermal trip, their ground truth, and healthy breakers untouched."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import orjson
import pytest
from click.testing import CliRunner

from sinkframe.cli.main import cli
from sinkframe.simulator import Fleet
from sinkframe.simulator.fleet import BREAKER

T0 = datetime(2026, 3, 2, tzinfo=timezone.utc).timestamp()
HOUR = 3600.0


def epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def readings(fleet: Fleet, start: float, end: float, interval: float) -> dict[str, list[tuple[float, dict]]]:
    """device -> [(time, measurements)] of its on-time smart_breaker messages."""
    found: dict[str, list] = {}
    for message in fleet.history(start, end, interval):
        body = orjson.loads(message.value)
        t = epoch(body["timestamp"])
        found.setdefault(body["device_id"], []).append((t, body["measurements"]))
    return found


def breaker_fleet(**kwargs) -> Fleet:
    return Fleet(devices=12, seed=4, kinds=("smart_breaker",), sensor_share=0, late_rate=0, out_of_order_rate=0,
                 **kwargs)


def test_truth_names_breakers_whose_trips_fall_in_the_window():
    fleet = breaker_fleet(degrading=3, degrade_window=(T0 + 12 * HOUR, T0 + 24 * HOUR))
    truth = json.loads(json.dumps(fleet.truth()))  # JSON-ready as it is
    assert len(truth["degrading"]) == 3
    breakers = {d.device_id for d in fleet.fleet if d.device_type == BREAKER}
    for fault in truth["degrading"]:
        assert fault["device_id"] in breakers and fault["phase"] in ("a", "b", "c")
        onset, trip = epoch(fault["onset"]), epoch(fault["trip"])
        assert T0 + 12 * HOUR <= trip <= T0 + 24 * HOUR
        assert 0 < trip - onset <= 10 * HOUR
    assert sorted(truth["breakers"]) == sorted(breakers)


def test_a_failing_contact_runs_hotter_drifts_apart_and_ends_in_a_trip_that_stays():
    fleet = breaker_fleet(degrading=1, degrade_window=(T0 + 18 * HOUR, T0 + 24 * HOUR), trip_rate=0)
    fault = fleet.truth()["degrading"][0]
    onset, trip = epoch(fault["onset"]), epoch(fault["trip"])
    phase = "abc".index(fault["phase"])
    healthy_fleet = breaker_fleet(trip_rate=0)
    mine = readings(fleet, T0, T0 + 26 * HOUR, 60)[fault["device_id"]]
    same = readings(healthy_fleet, T0, T0 + 26 * HOUR, 60)[fault["device_id"]]
    before = [(a, b) for (t, a), (_, b) in zip(mine, same) if t < onset]
    assert before and all(a == b for a, b in before)  # nothing differs before the onset
    near = [(a, b) for (t, a), (_, b) in zip(mine, same) if trip - 1800 <= t < trip and a["current_phase_a"] > 0]
    assert near
    assert min(a["temperature"] - b["temperature"] for a, b in near) > 5.0  # hotter than the same load
    currents = [f"current_phase_{p}" for p in "abc"]
    assert all(a[currents[phase]] < b[currents[phase]] for a, b in near)  # the failing phase carries less
    after = [a for t, a in mine if t >= trip]
    assert after and all(a["breaker_status"] == "tripped" and a["current_phase_a"] == 0 for a in after)
    assert after[0]["trip_count"] == max(a["trip_count"] for t, a in mine if t < trip) + 1


def test_healthy_breakers_are_the_same_whatever_the_others_do():
    window = (T0 + 2 * HOUR, T0 + 6 * HOUR)
    plain = readings(breaker_fleet(), T0, T0 + 6 * HOUR, 120)
    degrading = breaker_fleet(degrading=4, degrade_window=window)
    failing = {f["device_id"] for f in degrading.truth()["degrading"]}
    changed = readings(degrading, T0, T0 + 6 * HOUR, 120)
    assert len(failing) == 4
    for device, rows in plain.items():
        if device not in failing:
            assert changed[device] == rows, device


def test_degrading_needs_a_window_and_enough_breakers():
    with pytest.raises(ValueError, match="window"):
        breaker_fleet(degrading=1)
    with pytest.raises(ValueError, match="12"):
        breaker_fleet(degrading=13, degrade_window=(T0, T0 + HOUR))


def test_simulate_degrading_writes_the_truth_beside_the_run(kafka_bootstrap, new_topic, tmp_path):
    topic = new_topic()
    truth_path = tmp_path / "truth.json"
    result = CliRunner().invoke(cli, [
        "simulate", "--brokers", kafka_bootstrap, "--devices", "6", "--sensor-share", "0", "--kind", "smart_breaker",
        "--topic", f"smart_breaker={topic}", "--backfill", "6h", "--interval", "10m", "--rate", "0",
        "--degrading", "2", "--degrading-window", "3h", "--truth", str(truth_path)])
    assert result.exit_code == 0, result.output
    truth = json.loads(truth_path.read_text())
    assert len(truth["degrading"]) == 2
    start, end = (epoch(t) for t in truth["window"])
    assert end - start == pytest.approx(3 * HOUR, abs=1)
    assert all(start <= epoch(f["trip"]) <= end for f in truth["degrading"])
    assert "sent 216 messages" in result.output  # 6 breakers x 36 readings

    live = CliRunner().invoke(cli, ["simulate", "--brokers", kafka_bootstrap, "--count", "1", "--degrading", "1"])
    assert live.exit_code != 0 and "--backfill or --duration" in live.output
