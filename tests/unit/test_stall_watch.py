"""StallWatch: which running connectors make no progress while messages wait (a pure unit: stats and
watermarks as plain objects)."""
from __future__ import annotations

from types import SimpleNamespace

from sinkframe.ops.lag import StallWatch
from sinkframe.pipeline.stats import ConnectorState, ConnectorStats


class Marks:
    def __init__(self, high: int):
        self.value = SimpleNamespace(low=0, high=high)

    def high(self, topic, partition):
        return self.value


def task(stored: int, *, last_write_at: float | None, state=ConnectorState.RUNNING):
    stats = ConnectorStats("c", "t", assigned=(0,), stored_offsets={0: stored}, last_write_at=last_write_at,
                           state=state)
    return SimpleNamespace(stats=stats)


def test_lag_with_no_write_for_long_enough_is_a_stall():
    watch = StallWatch(stall_after=60)
    t = task(100, last_write_at=1000.0)
    watch.update([t], Marks(150), now=1000.0)
    assert watch.stalled_for(t.stats, now=1059.0) is None
    assert watch.stalled_for(t.stats, now=1061.0) == 61.0
    assert watch.describe(t.stats, now=1061.0) == "stalled: 50 messages waiting and nothing written for 61s"


def test_an_idle_connector_whose_first_message_just_came_is_not_stalled():
    watch = StallWatch(stall_after=60)
    t = task(100, last_write_at=0.0)  # nothing written for ages: there was nothing to write
    watch.update([t], Marks(100), now=1000.0)
    watch.update([t], Marks(101), now=1001.0)  # lag from now on
    assert watch.stalled_for(t.stats, now=1002.0) is None
    assert watch.stalled_for(t.stats, now=1062.0) is not None


def test_progress_or_no_lag_or_another_state_is_not_a_stall():
    watch = StallWatch(stall_after=60)
    writing = task(100, last_write_at=1090.0)
    watch.update([writing], Marks(150), now=1000.0)
    assert watch.stalled_for(writing.stats, now=1100.0) is None
    caught_up = task(150, last_write_at=0.0)
    watch.update([caught_up], Marks(150), now=1000.0)
    assert watch.stalled_for(caught_up.stats, now=2000.0) is None
    waiting = task(100, last_write_at=0.0, state=ConnectorState.WAITING_FOR_DATABASE)
    watch.update([waiting], Marks(150), now=1000.0)
    assert watch.stalled_for(waiting.stats, now=2000.0) is None
