"""Latency at a fixed offered load: how long after production a message's row is committed.

While `sinkframe run` consumes, `workload.produce_paced` offers the benchmark's
smart-breaker messages at `rate` per second for `seconds`. They are encoded
beforehand and carry no `timestamp`, so each row's `time` is its Kafka record's
timestamp: when it was handed to the producer, to the millisecond. (The fleet
simulator, used before, builds and encodes every message as it sends it: on two
cores it took most of one from the sink, and reached 8.8k msgs/s on one machine.)
Two figures:

- visible (the headline; an upper bound): a poller reads the stored offsets
  every 10 ms. Offsets commit in the same transaction as the rows, so a row is
  committed by the first poll that sees its partition's offset past the row's
  offset. Latency = that poll's end - the message's timestamp. It overstates the
  truth by at most one poll interval plus one query.
- transaction start (a lower bound): `ingested_at` is `DEFAULT now()`, the start
  of the sink's write transaction; minus the message's timestamp. It leaves out
  the time the write itself takes.
"""
from __future__ import annotations

import bisect
import statistics
import threading
import time

import psycopg
from psycopg import sql

from sinkframe.bench import database, services
from sinkframe.bench.endtoend import unique_topic
from sinkframe.bench.services import BenchContext
from sinkframe.bench.sinkproc import SinkProcess
from sinkframe.bench.workload import DEVICES, create_topic, produce_paced
from sinkframe.errors import SinkframeError

POLL_SECONDS = 0.01


class OffsetPoller(threading.Thread):
    """Records, per partition, when each new stored offset was first seen: [(time, next_offset)]."""

    def __init__(self, dsn: str, topic: str):
        super().__init__(name="bench-offset-poller", daemon=True)
        self.dsn, self.topic = dsn, topic
        self.seen: dict[int, list[tuple[float, int]]] = {}
        self.latest: dict[int, int] = {}
        self.halt = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self.halt.is_set():
                stored = database.stored_offsets(conn, self.topic)
                now = time.time()
                for partition, next_offset in stored.items():
                    if next_offset != self.latest.get(partition):
                        self.latest[partition] = next_offset
                        self.seen.setdefault(partition, []).append((now, next_offset))
                self.halt.wait(POLL_SECONDS)

    def committed(self) -> int:
        """Messages committed so far (offsets of a fresh topic start at 0)."""
        return sum(self.latest.values())


def committed_rows(dsn: str, table: str) -> list[tuple[int, int, float, float]]:
    """(partition, offset, message time, ingested_at) of every row, times as epoch seconds."""
    query = sql.SQL("SELECT source_partition, source_offset, extract(epoch FROM time)::float8, "
                    "extract(epoch FROM ingested_at)::float8 FROM {}").format(sql.Identifier(table))
    with psycopg.connect(dsn) as conn:
        return conn.execute(query).fetchall()


def latencies(rows, seen: dict[int, list[tuple[float, int]]]) -> tuple[list[float], list[float], int]:
    """(visible latencies, transaction-start latencies, rows never seen committed by the poller)."""
    polls = {p: ([n for _, n in entries], [t for t, _ in entries]) for p, entries in seen.items()}
    visible, txn_start, missing = [], [], 0
    for partition, offset, produced, ingested in rows:
        txn_start.append(ingested - produced)
        offsets, times = polls.get(partition, ([], []))
        k = bisect.bisect_right(offsets, offset)  # the first poll whose next offset is past this row
        if k == len(offsets):
            missing += 1
        else:
            visible.append(times[k] - produced)
    return visible, txn_start, missing


def percentiles(values: list[float]) -> dict:
    if len(values) < 2:
        return {}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50_ms": round(cuts[49] * 1000, 1), "p90_ms": round(cuts[89] * 1000, 1),
            "p99_ms": round(cuts[98] * 1000, 1), "max_ms": round(max(values) * 1000, 1)}


def run_latency(ctx: BenchContext, rate: float, seconds: float) -> dict:
    topic = unique_topic("latency")
    with services.broker(ctx, "latency") as bootstrap:
        create_topic(bootstrap, topic, ctx.partitions)
        database.reset_tables(ctx.dsn, ctx.tables)
        sink = SinkProcess(ctx.config, env=services.sink_env(ctx, bootstrap, topic),
                           log_path=ctx.log_path("latency")).start()
        poller = OffsetPoller(ctx.dsn, topic)
        try:
            wait_for_assignment(sink, timeout=60)
            poller.start()
            report = produce_paced(bootstrap, topic, rate=rate, seconds=seconds)
            if report.failed:
                raise SinkframeError(f"latency run: {report.failed} messages not delivered: {report.first_error}")
            deadline = time.monotonic() + 60
            while poller.committed() < report.delivered and time.monotonic() < deadline:
                sink.sample_memory()
                time.sleep(0.05)
        finally:
            poller.halt.set()
            sink.stop()
            poller.join(5)
    visible, txn_start, missing = latencies(committed_rows(ctx.dsn, ctx.tables.data), poller.seen)
    return {
        "offered_rate": rate,
        "achieved_rate": round(report.rate),
        "seconds": seconds,
        "messages": report.delivered,
        "rows_counted": database.count_rows(ctx.dsn, ctx.tables.data),
        "never_seen_committed": missing,
        "visible": percentiles(visible),
        "transaction_start": percentiles(txn_start),
        "poll_interval_ms": POLL_SECONDS * 1000,
        "producer": f"pre-encoded benchmark messages ({DEVICES} breakers), paced every millisecond; "
                    "row time = Kafka timestamp = send time",
        "peak_rss_mb": round(max(sink.peak_rss_kib.values(), default=0) / 1024, 1) or None,
    }


def wait_for_assignment(sink: SinkProcess, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not sink.assigned_at:
        if sink.proc.poll() is not None or time.monotonic() > deadline:
            raise SinkframeError(f"latency run: the sink was not assigned partitions; see {sink.log_path}")
        time.sleep(0.05)
    time.sleep(0.5)  # let the consumer's first fetches go out before the clock matters
