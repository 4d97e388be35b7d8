"""Counters a connector task keeps about itself (read by logs, metrics and status).

Plain attributes updated by one thread (the task) and read by others; under the
GIL a reader sees each value whole, which is all monitoring needs.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from enum import Enum


class ConnectorState(str, Enum):
    """Where a connector is in its life; the value is what metrics, health and status show."""

    STARTING = "starting"
    RUNNING = "running"
    WAITING_FOR_DATABASE = "waiting-for-database"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value


@dataclass
class ConnectorStats:
    connector: str
    topic: str
    messages: int = 0
    rows_by_table: Counter = field(default_factory=Counter)
    batches: int = 0
    batch_seconds_total: float = 0.0
    last_batch_seconds: float = 0.0
    errors_by_stage: Counter = field(default_factory=Counter)  # key: (stage, error_class)
    dead_letters: int = 0
    fast_path_fallbacks: Counter = field(default_factory=Counter)  # key: reason (mapping/fastpath.py)
    write_retries: int = 0
    fenced: int = 0
    # partition -> {"stored_offset", "high_watermark"}: stopped, the database holds an offset past the log end
    partitions_past_log_end: dict = field(default_factory=dict)
    log_end_restarts: int = 0  # partitions restarted from their earliest offset for that reason (opt-in)
    stored_offsets: dict = field(default_factory=dict)  # partition -> next offset the database holds
    newest_event_ms: int | None = None
    last_write_at: float | None = None
    assigned: tuple = ()
    assignments: int = 0  # rebalances that gave this connector partitions (0: not joined yet)
    # alert -> keys (devices) whose rule is firing now, as the database holds it
    alerts_firing: Counter = field(default_factory=Counter)
    alert_transitions: Counter = field(default_factory=Counter)  # key: (alert, 'firing' | 'resolved')
    paused: bool = False  # fetching paused: the writer is busy (database unavailable) or fenced
    state: ConnectorState = ConnectorState.STARTING
    started_at: float = field(default_factory=time.time)

    def record_batch(self, *, messages: int, rows: dict[str, int], dead_letters: int,
                     seconds: float, newest_ms: int | None, next_offsets: dict[int, int]) -> None:
        self.messages += messages
        self.rows_by_table.update(rows)
        self.dead_letters += dead_letters
        self.batches += 1
        self.batch_seconds_total += seconds
        self.last_batch_seconds = seconds
        self.stored_offsets.update(next_offsets)
        if newest_ms is not None and (self.newest_event_ms is None or newest_ms > self.newest_event_ms):
            self.newest_event_ms = newest_ms
        self.last_write_at = time.time()

    def record_transitions(self, transitions) -> None:
        """Alert transitions a committed batch wrote (sinkframe.alerts.Transition)."""
        for t in transitions:
            self.alert_transitions[(t.alert, str(t.state))] += 1
            # Never below 0: each worker of a group starts from the connector's stored count and
            # may resolve what another worker fired since.
            self.alerts_firing[t.alert] = max(0, self.alerts_firing[t.alert] + (1 if str(t.state) == "firing"
                                                                                 else -1))
