"""Prometheus metrics of a running pipeline, read from the tasks' own counters at scrape time.

The connector tasks keep plain counters (`ConnectorStats`); a custom collector
turns them into metric families whenever /metrics is scraped, so the hot path
pays nothing for monitoring. The one histogram, batch write latency, needs each
batch's duration: `BatchLatency.update()` (called every 0.2 s from the runner's
main loop, and at each scrape) counts the batches finished since its last call.
"""
from __future__ import annotations

import bisect
import itertools
import threading
import time
from dataclasses import dataclass
from typing import Iterator

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, InfoMetricFamily, Metric,
)
from prometheus_client.registry import Collector

from sinkframe import __version__
from sinkframe.alerts.engine import Change
from sinkframe.mapping.fastpath import FALLBACK_REASONS
from sinkframe.ops.health import DatabaseProbe
from sinkframe.ops.kafka import WatermarkPoller
from sinkframe.ops.lag import PartitionPosition, partition_positions  # noqa: F401 - re-exported
from sinkframe.pipeline.stats import ConnectorState

STALLED = "stalled"  # shown instead of "running" by a running connector that makes no progress (ops/lag.py)
STATES = tuple(state.value for state in ConnectorState) + (STALLED,)
CHANGES = tuple(change.value for change in Change)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def new_registry() -> CollectorRegistry:
    """A registry of our own (not the global one) with the process, platform and GC collectors."""
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


class BatchLatency:
    """The batch write latency histogram, fed from the tasks' counters.

    `update()` runs every 0.2 s on the runner's main thread and once more at each
    scrape, so `_count` always equals the batches counter. Exact for the usual
    case of at most one batch per connector between two updates; when several
    finished, each is counted at their mean duration, so `_sum` and `_count` stay
    exact and only the bucket of each may be approximate.
    """

    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS):
        self.bounds = tuple(buckets)
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[int, float]] = {}
        self._counts: dict[str, list[int]] = {}  # per connector: per bucket (not cumulative), then +Inf
        self._sums: dict[str, float] = {}

    def update(self, tasks) -> None:
        with self._lock:
            for task in tasks:
                self._update_one(task.stats)

    def _update_one(self, stats) -> None:
        batches, total = stats.batches, stats.batch_seconds_total
        seen_batches, seen_total = self._seen.get(stats.connector, (0, 0.0))
        new = batches - seen_batches
        if new <= 0:
            return
        each = max(stats.last_batch_seconds if new == 1 else (total - seen_total) / new, 0.0)
        counts = self._counts.setdefault(stats.connector, [0] * (len(self.bounds) + 1))
        counts[bisect.bisect_left(self.bounds, each)] += new
        self._sums[stats.connector] = self._sums.get(stats.connector, 0.0) + (total - seen_total)
        self._seen[stats.connector] = (batches, total)

    def family(self) -> HistogramMetricFamily:
        family = HistogramMetricFamily(
            "sinkframe_batch_write_seconds", "Time to write one batch (rows, dead letters and offsets in one "
            "transaction), including retries.", labels=["connector"])
        with self._lock:
            for connector, counts in sorted(self._counts.items()):
                cumulative = list(itertools.accumulate(counts))
                buckets = [(_bound(b), c) for b, c in zip(self.bounds, cumulative)] + [("+Inf", cumulative[-1])]
                family.add_metric([connector], buckets, self._sums[connector])
        return family


def _bound(value: float) -> str:
    return repr(float(value))


class PipelineCollector(Collector):
    """Metric families read from the pipeline at scrape time."""

    def __init__(self, source):
        """`source` has `.latency` (BatchLatency), `.pipeline`, `.watermarks` (WatermarkPoller) and
        `.probe` (DatabaseProbe), the last three possibly None, and may have `.stalls` (StallWatch),
        read at every scrape: the RunMonitor fills them in once started. Nothing here waits on the
        database: the probe's answers are read as they stand."""
        self._source = source

    def describe(self) -> list[Metric]:
        return []  # families depend on the pipeline, which may not exist at registration

    def collect(self) -> Iterator[Metric]:
        info = InfoMetricFamily("sinkframe_build", "sinkframe version.")
        info.add_metric([], {"version": __version__})
        yield info
        pipeline = self._source.pipeline
        tasks = list(pipeline.tasks) if pipeline is not None else []
        yield from self._connector_families(tasks)
        self._source.latency.update(tasks)
        yield self._source.latency.family()
        yield from self._partition_families(tasks)
        if pipeline is not None and pipeline.pool is not None:
            yield from _pool_families(pipeline.pool.get_stats())
        if self._source.probe is not None:
            yield from self._database_families(self._source.probe)

    def _connector_families(self, tasks) -> Iterator[Metric]:
        c = {name: CounterMetricFamily(f"sinkframe_{name}", text, labels=labels) for name, text, labels in (
            ("messages", "Kafka messages consumed and written (rows or dead letters).", ["connector", "topic"]),
            ("rows_written", "Rows written, per table.", ["connector", "table"]),
            ("batches", "Batches written (one transaction each).", ["connector"]),
            ("errors", "Records that failed, by stage (decode, validate, map, write) and error class.",
             ["connector", "stage", "error_class"]),
            ("dead_letters", "Records written to the dead-letter table.", ["connector"]),
            ("write_retries", "Batch writes retried because the database was unavailable.", ["connector"]),
            ("fenced_batches", "Batches rolled back because another consumer owned a partition.", ["connector"]),
            ("alert_transitions", "Alert transitions committed (rows of sinkframe_alerts), by rule and "
             "state (firing, resolved).", ["connector", "alert", "state"]),
            ("fast_path_fallbacks", "Records a mapper's fast path left to the per-record path, by reason: "
             + "; ".join(f"{reason}: {meaning}" for reason, meaning in FALLBACK_REASONS.items()) + ".",
             ["connector", "reason"]),
            ("log_end_restarts", "Partitions restarted from their earliest offset because the stored offset "
             "was past the log end (consumer.stored_offset_past_log_end: earliest).", ["connector"]),
        )}
        g = {name: GaugeMetricFamily(f"sinkframe_{name}", text, labels=labels) for name, text, labels in (
            ("connector_state", "1 for the connector's current state; 'stalled': running, but nothing written "
             "for SINKFRAME_STALL_AFTER seconds while messages wait.", ["connector", "state"]),
            ("connector_paused", "1 while the connector's partitions are paused (database unavailable).",
             ["connector"]),
            ("assigned_partitions", "Partitions assigned to this process.", ["connector"]),
            ("event_time_lag_seconds", "Now minus the newest Kafka record timestamp written.", ["connector"]),
            ("last_write_timestamp_seconds", "Unix time of the last batch written.", ["connector"]),
            ("alerts_firing", "Keys (devices) whose alert rule is firing now.", ["connector", "alert"]),
            ("partitions_past_log_end", "Partitions stopped because the offset stored in the database is past "
             "the partition's log end (topic re-created or truncated).", ["connector"]),
        )}
        now = time.time()
        stalls = getattr(self._source, "stalls", None)
        for task in tasks:
            s = task.stats
            name = s.connector
            state = STALLED if stalls is not None and stalls.stalled_for(s, now) is not None else s.state
            c["messages"].add_metric([name, s.topic], s.messages)
            for table, rows in dict(s.rows_by_table).items():
                c["rows_written"].add_metric([name, table], rows)
            c["batches"].add_metric([name], s.batches)
            for (stage, error_class), count in dict(s.errors_by_stage).items():
                c["errors"].add_metric([name, stage, error_class], count)
            c["dead_letters"].add_metric([name], s.dead_letters)
            for reason, count in dict(s.fast_path_fallbacks).items():
                c["fast_path_fallbacks"].add_metric([name, reason], count)
            c["write_retries"].add_metric([name], s.write_retries)
            c["fenced_batches"].add_metric([name], s.fenced)
            c["log_end_restarts"].add_metric([name], s.log_end_restarts)
            g["partitions_past_log_end"].add_metric([name], len(s.partitions_past_log_end))
            for each in STATES:
                g["connector_state"].add_metric([name, each], 1.0 if state == each else 0.0)
            g["connector_paused"].add_metric([name], 1.0 if s.paused else 0.0)
            g["assigned_partitions"].add_metric([name], len(s.assigned))
            if s.newest_event_ms is not None:
                g["event_time_lag_seconds"].add_metric([name], max(now - s.newest_event_ms / 1000, 0.0))
            if s.last_write_at is not None:
                g["last_write_timestamp_seconds"].add_metric([name], s.last_write_at)
            _add_alerts(s, c["alert_transitions"], g["alerts_firing"])
        yield from c.values()
        yield from g.values()

    def _partition_families(self, tasks) -> Iterator[Metric]:
        labels = ["connector", "topic", "partition"]
        stored = GaugeMetricFamily("sinkframe_stored_offset", "Next offset stored in the database "
                                   "with the rows (the exactly-once position).", labels=labels)
        high = GaugeMetricFamily("sinkframe_partition_high_watermark", "Partition high watermark "
                                 "(next offset to be produced).", labels=labels)
        lag = GaugeMetricFamily("sinkframe_consumer_lag_messages", "High watermark minus the stored offset, "
                                "for partitions assigned to this process.", labels=labels)
        age = GaugeMetricFamily("sinkframe_watermarks_age_seconds", "Age of the watermarks behind the lag "
                                "metrics (grows while the brokers cannot be reached).")
        watermarks = self._source.watermarks
        for p in partition_positions(tasks, watermarks):
            key = [p.connector, p.topic, str(p.partition)]
            if p.stored is not None:
                stored.add_metric(key, p.stored)
            if p.high is not None:
                high.add_metric(key, p.high)
                lag.add_metric(key, p.lag)
        if watermarks is not None and watermarks.updated_at is not None:
            age.add_metric([], max(time.time() - watermarks.updated_at, 0.0))
        yield from (stored, high, lag, age)

    def _database_families(self, probe: DatabaseProbe) -> Iterator[Metric]:
        ok, _ = probe.check()
        up = GaugeMetricFamily("sinkframe_database_up", "1 if the database answered the readiness query "
                               "lately (the probe runs in the background; see the probe's age).")
        up.add_metric([], 1.0 if ok else 0.0)
        yield up
        age = probe.age()
        if age is not None:
            gauge = GaugeMetricFamily("sinkframe_database_probe_age_seconds", "Seconds since the background "
                                      "database probe last finished (grows while the database does not answer).")
            gauge.add_metric([], age)
            yield gauge
        jobs = CounterMetricFamily("sinkframe_timescaledb_job_failures", "Failed runs of TimescaleDB "
                                   "background jobs (policies, aggregate refreshes).",
                                   labels=["job_id", "proc_name", "hypertable"])
        for job in probe.job_failures() if ok else []:
            jobs.add_metric([str(job.job_id), job.proc_name, job.hypertable], job.failures or 0)
        yield jobs


def _add_alerts(stats, transitions: CounterMetricFamily, firing: GaugeMetricFamily) -> None:
    """The alert samples of one connector: every alert it knows, with zeros.

    A rule that resolved shows 0 firing rather than vanishing, and its 'firing'
    and 'resolved' series appear together (from the first scrape for a rule the
    task lists in `alerts_firing` at 0), so `increase()` counts the first
    'resolved' instead of taking it for the start of a new series.
    """
    counts, firing_now = dict(stats.alert_transitions), dict(stats.alerts_firing)  # copies: the task writes on
    for alert in sorted(set(firing_now) | {alert for alert, _ in counts}):
        firing.add_metric([stats.connector, alert], firing_now.get(alert, 0))
        for change in CHANGES:
            transitions.add_metric([stats.connector, alert, change], counts.get((alert, change), 0))


def _pool_families(stats: dict) -> Iterator[Metric]:
    for name, text, value in (
        ("db_pool_size", "Connections in the writer pool (busy or idle).", stats.get("pool_size", 0)),
        ("db_pool_max", "Maximum connections of the writer pool.", stats.get("pool_max", 0)),
        ("db_pool_in_use", "Pool connections lent out right now.",
         stats.get("pool_size", 0) - stats.get("pool_available", 0)),
        ("db_pool_waiting", "Requests waiting for a pool connection.", stats.get("requests_waiting", 0)),
    ):
        gauge = GaugeMetricFamily(f"sinkframe_{name}", text)
        gauge.add_metric([], value)
        yield gauge
    for name, key, text in (
        ("db_pool_connection_errors", "connections_errors", "Failed attempts to open a pool connection."),
        ("db_pool_connections_lost", "connections_lost", "Pool connections found broken."),
    ):
        counter = CounterMetricFamily(f"sinkframe_{name}", text)
        counter.add_metric([], stats.get(key, 0))
        yield counter
