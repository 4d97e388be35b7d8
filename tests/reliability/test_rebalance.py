"""Two sink processes in one consumer group; one joins and leaves while messages flow.

Partitions move between them (revocation drops the unwritten batch; the new
owner starts from the offsets stored in the database, and a stale writer is
fenced by the offsets' compare-and-set): every message ends in the database
exactly once.
"""
from __future__ import annotations

import signal
import threading
import time

import pytest

from sinkframe.devservices import produce

from sinktest.config import sink_env, write_connector
from sinktest.db import create_tables, query, row_counts
from sinktest.sinks import start_sink_process
from sinktest.waiting import wait_for

pytestmark = pytest.mark.slow


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
    backlog, streamed = 2_000, 12_000
    total = backlog + streamed
    produce(kafka_bootstrap, topic, messages(0, backlog), key=lambda m: m["device_id"].encode())
    connector = write_connector(tmp_path, name="rebalance", topic=topic, max_rows=500, max_wait_ms=100)
    env = sink_env(kafka_bootstrap, pg_dsn)
    log_a, log_b = tmp_path / "a.log", tmp_path / "b.log"

    sink_a = start_sink_process([connector], env, log_a)
    sink_b = None
    try:
        wait_for(lambda: row_counts(pg_dsn)[0] > 0, timeout=30, message="sink A to write")
        producer = produce_steadily(kafka_bootstrap, topic, backlog, streamed, per_second=1_000)
        sink_b = start_sink_process([connector], env, log_b, log_level="DEBUG")
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
    # Both processes owned partitions at some point, and A took B's back after it left.
    assert "assigned" in log_b.read_text()
    assert log_a.read_text().count("assigned") >= 2
