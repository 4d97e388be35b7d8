"""Lag per partition, and whether a running connector is stalled.

Stalled: messages wait (lag > 0) and no batch was written for `stall_after`
seconds, while the connector says it is running. A connector waiting for the
database says so itself; a stall is what nothing else reports: a write stuck
on a dead connection, a consumer that stopped fetching. Lag must have stayed
above 0 for that long too, so that an idle connector whose first new message
arrives is not called stalled before it could write it.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Iterator

from sinkframe.pipeline.stats import ConnectorState


@dataclass(frozen=True)
class PartitionPosition:
    connector: str
    topic: str
    partition: int
    stored: int | None  # next offset stored in the database (None: nothing stored yet)
    high: int | None  # high watermark (None: not known yet)
    lag: int | None


def partition_positions(tasks, watermarks) -> Iterator[PartitionPosition]:
    """Per partition assigned to this process: stored offset, high watermark and the lag between.

    A partition with no stored offset is read from its start (or Kafka's committed
    offset), so its lag counts from the low watermark.
    """
    for task in tasks:
        s = task.stats
        offsets = dict(s.stored_offsets)
        for partition in s.assigned:
            stored = offsets.get(partition)
            marks = watermarks.high(s.topic, partition) if watermarks is not None else None
            lag = None if marks is None else max(marks.high - (marks.low if stored is None else stored), 0)
            yield PartitionPosition(s.connector, s.topic, partition, stored,
                                    None if marks is None else marks.high, lag)


class StallWatch:
    """Fed every tick with the lag of each connector; says which running ones are stalled."""

    def __init__(self, stall_after: float):
        self.stall_after = stall_after
        self._lag_since: dict[str, float] = {}  # connector -> time.time() since which its lag is > 0
        self._lags: dict[str, int] = {}
        self._lock = threading.Lock()

    def update(self, tasks, watermarks, now: float | None = None) -> None:
        now = time.time() if now is None else now
        lags: dict[str, int] = {}
        for p in partition_positions(tasks, watermarks):
            lags[p.connector] = lags.get(p.connector, 0) + (p.lag or 0)
        with self._lock:
            self._lags = lags
            for task in tasks:
                name = task.stats.connector
                if lags.get(name, 0) > 0:
                    self._lag_since.setdefault(name, now)
                else:
                    self._lag_since.pop(name, None)

    def stalled_for(self, stats, now: float | None = None) -> float | None:
        """Seconds the connector of `stats` has been stalled; None when it is not."""
        if stats.state != ConnectorState.RUNNING:
            return None
        with self._lock:
            since = self._lag_since.get(stats.connector)
        if since is None:
            return None
        now = time.time() if now is None else now
        quiet = now - max(since, stats.last_write_at or 0.0)
        return quiet if quiet >= self.stall_after else None

    def describe(self, stats, now: float | None = None) -> str | None:
        """'stalled: ...' for a stalled connector, else None."""
        quiet = self.stalled_for(stats, now)
        if quiet is None:
            return None
        with self._lock:
            lag = self._lags.get(stats.connector, 0)
        return f"stalled: {lag} messages waiting and nothing written for {quiet:.0f}s"
