"""The contact-health detector, pure: it learns healthy breakers, alarms on a failing contact, replays exactly."""
from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest

from sinkframe.models import detector
from sinkframe.models.evaluate import evaluate
from sinkframe.simulator import Fleet

from modelrows import fleet_rows, take

DAY = 86400.0
T0 = datetime(2026, 3, 2, tzinfo=timezone.utc).timestamp()


@pytest.fixture(scope="module")
def run():
    """24 breakers, 3 days at 2-minute readings; 2 contacts fail on the last day. (fleet, history, day)."""
    fleet = Fleet(devices=24, seed=21, kinds=("smart_breaker",), sensor_share=0, degrading=2,
                  degrade_window=(T0 + 2 * DAY, T0 + 3 * DAY))
    rows = fleet_rows(fleet, T0, T0 + 3 * DAY, 120)
    history = rows.times < T0 + 2 * DAY
    return fleet, take(rows, history), take(rows, ~history)


@pytest.fixture(scope="module")
def fitted(run):
    return detector.fit(run[1])


def test_fit_learns_every_key_and_sets_a_threshold_above_the_history(run, fitted):
    found, metrics = fitted
    assert len(found.baselines) == 24 == metrics["keys_fitted"]
    assert metrics["score_max"] < found.threshold <= detector.MAX_THRESHOLD
    # The simulator's thermal time constant is 600 s: most keys find it.
    taus = [b.tau for b in found.baselines.values()]
    assert taus.count(600.0) >= len(taus) // 2


def test_the_failing_contacts_alarm_before_their_trip_and_the_healthy_ones_do_not(run, fitted):
    fleet, history, day = run
    found, _ = fitted
    warmed = detector.score(found, history, {}).states
    scored = detector.score(found, day, warmed)
    result = evaluate(fleet.truth(), day.keys, day.times, scored.alarm, seconds_scoring=1.0)
    assert result.degrading == 2 and result.caught_in_time == 2, result.leads
    assert result.false_alarms == 0
    assert np.nanmax(scored.score) <= 1.0 and np.nanmin(scored.score) >= 0.0


def test_scores_are_bit_identical_whatever_the_batch_boundaries(run, fitted):
    _, history, day = run
    found, _ = fitted
    whole = detector.score(found, day, {})
    rng = np.random.default_rng(5)
    cuts = np.sort(rng.choice(np.arange(1, len(day)), size=40, replace=False))
    states, parts = {}, []
    for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(day)]):
        piece = take(day, (np.arange(len(day)) >= lo) & (np.arange(len(day)) < hi))
        out = detector.score(found, piece, states)
        states.update(out.states)
        parts.append(out.score)
    assert np.array_equal(np.concatenate(parts), whole.score, equal_nan=True)
    assert states == whole.states


def test_rows_that_cannot_be_scored_get_no_score_and_leave_the_state(fitted, run):
    found, _ = fitted
    day = run[2]
    first = take(day, np.arange(len(day)) < 2000)
    out = detector.score(found, first, {})
    key = first.keys[0]
    odd = detector.Rows([key, "never-seen", key], np.array([first.times[0] - 600, first.times[-1], np.nan]),
                        np.array([50.0, 20.0, 20.0]), np.array([[1.0, 1.0, 1.0]] * 3))
    again = detector.score(found, odd, out.states)
    assert np.isnan(again.score).all() and not again.alarm.any()
    assert again.states[key].smoothed == out.states[key].smoothed
    assert "never-seen" not in again.states


def test_a_key_after_an_open_breaker_is_left_to_settle(fitted, run):
    found, _ = fitted
    day = run[2]
    key = day.keys[0]
    times = day.times[0] + 60.0 * np.arange(30)
    loads = np.full((30, 3), 10.0)
    loads[5] = 0.0  # open: the breaker tripped
    rows = detector.Rows([key] * 30, times, np.full(30, 30.0), loads)
    scored = detector.score(found, rows, {}).score
    tau = found.baselines[key].tau
    settle = detector.SETTLE_TAUS * tau
    # the first rows warm the lag up; the open row and those within the settling time after it are not scored
    assert np.isnan(scored[times - times[5] < settle]).all()
    assert np.isfinite(scored[times - times[5] >= settle]).all()
