"""Two sink processes in one consumer group; one joins and leaves while messages flow.

Partitions move between them: a revocation gives the write in flight a short
grace, then gives it up and drops the batch being built; the new owner starts
from the offsets stored in the database. A write given up that commits after
all is caught by the offsets' compare-and-set: here a write of sink A is held in
flight while sink B joins, so it outlives A's revocation, and is released only
once B has written from the offsets the database held: A's write must then be
fenced (rolled back; A reads the offsets again). Every message ends in the
database exactly once.
"""
from __future__ import annotations

import signal
import threading
import time

import psycopg
import pytest

from sinkframe.devservices import produce

from sinktest.config import sink_env, write_connector
from sinktest.db import create_tables, query, row_counts
from sinktest.liveness import IN_FLIGHT_OF, SLOW_WRITES, slow_writes
from sinktest.sinks import start_sink_process
from sinktest.waiting import wait_for

pytestmark = pytest.mark.slow

FENCED = "stored offset moved under us"
# At most how long a write of sink A is held: longer than sink B needs to start,
# join and write on a loaded machine (the test releases it as soon as B wrote).
A_HELD_SECONDS = 60.0


def messages(start: int, count: int):
    return ({"device_id": f"dev-{i % 101}", "timestamp": 1_700_000_000 + i, "payload": {"i": i}}
            for i in range(start, start + count))


def produce_steadily(bootstrap: str, topic: str, start: int, count: int, per_second: int) -> threading.Thread:
    def run():
        step = per_second // 10
        for first in range(start, start + count, step):
            produce(bootstrap, topic, messages(first, min(step, start + count - first)),
                    key=lambda m: m["device_id"].encode())
            time.sleep(0.1)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_second_sink_joining_and_leaving_mid_stream_loses_and_duplicates_nothing(
        kafka_bootstrap, pg_dsn, new_topic, tmp_path):
    topic = new_topic(partitions=4)
    create_tables(pg_dsn)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(SLOW_WRITES)
    backlog, streamed = 2_000, 30_000
    total = backlog + streamed
    produce(kafka_bootstrap, topic, messages(0, backlog), key=lambda m: m["device_id"].encode())
    connector = write_connector(tmp_path, name="rebalance", topic=topic, max_rows=500, max_wait_ms=100)
    env = sink_env(kafka_bootstrap, pg_dsn)
    log_a, log_b = tmp_path / "a.log", tmp_path / "b.log"

    sink_a = start_sink_process([connector], {**env, "SINKFRAME_DB_APPLICATION_NAME": "sink-a"}, log_a,
                                log_level="DEBUG")
    sink_b = None
    try:
        wait_for(lambda: row_counts(pg_dsn)[0] > 0, timeout=30, message="sink A to write")
        producer = produce_steadily(kafka_bootstrap, topic, backlog, streamed, per_second=1_000)
        # Sink B joins while a write of A is held in flight: A's revocation gives it up,
        # and B writes from the offsets the database holds before A's write goes on.
        slow_writes(pg_dsn, A_HELD_SECONDS, application_name="sink-a")
        wait_for(lambda: query(pg_dsn, IN_FLIGHT_OF, ("sink-a",))[0][0] > 0, timeout=15,
                 message="a held write of sink A in flight")
        sink_b = start_sink_process([connector], env, log_b, log_level="DEBUG")
        wait_for(lambda: "connector rebalance: wrote" in log_b.read_text(), timeout=A_HELD_SECONDS - 10,
                 message="sink B to write its first batch while A's write is held")
        slow_writes(pg_dsn, None)  # A's given-up write goes on, and must not commit
        wait_for(lambda: FENCED in log_a.read_text() + log_b.read_text(), timeout=30,
                 message="a write fenced by the compare-and-set")
        wait_for(lambda: log_b.read_text().count("connector rebalance: wrote") >= 3, timeout=30,
                 message="sink B to own partitions and write batches")
        time.sleep(2.0)  # both write the live stream for a while
        assert producer.is_alive(), "the producer finished before sink B left: the test proves less"
        sink_b.send_signal(signal.SIGTERM)  # leaves the group while messages still flow
        assert sink_b.wait(20) == 0, log_b.read_text()[-3000:]
        producer.join(60)
        wait_for(lambda: row_counts(pg_dsn)[0] >= total, timeout=60, message=f"all {total} rows")
        time.sleep(1.0)  # a duplicate would land within a batch interval
    finally:
        for sink in (sink_a, sink_b):
            if sink is not None and sink.poll() is None:
                sink.send_signal(signal.SIGTERM)
                sink.wait(30)
    assert row_counts(pg_dsn) == (total, total), log_a.read_text()[-3000:]
    assert query(pg_dsn, "SELECT sum(next_offset) FROM sinkframe_offsets") == [(total,)]
    # A gave its write up at the revocation; both owned partitions; A took B's back after it left.
    text_a, text_b = log_a.read_text(), log_b.read_text()
    assert "giving it up" in text_a
    assert FENCED in text_a + text_b
    assert "assigned" in text_b
    assert text_a.count("assigned") >= 2
