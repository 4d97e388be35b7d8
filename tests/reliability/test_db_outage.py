"""The database goes away mid-run: the sink pauses, keeps its group membership, resumes by itself.

Runs against a PostgreSQL server of the test's own (the machine's main cluster is
shared with concurrently running tests and is never stopped). `fast` is a clean
shutdown; `immediate` is a crash that also loses the last commits (see sinktest/pgserver.py).
"""
from __future__ import annotations

import logging
import threading
import time

import pytest

from sinkframe.devservices import produce

from sinktest.config import sink_env, write_connector
from sinktest.db import create_tables, query, row_counts
from sinktest.sinks import InProcessSink
from sinktest.waiting import wait_for

pytestmark = pytest.mark.slow

MAX_ROWS = 500


def messages(start: int, count: int):
    for i in range(start, start + count):
        yield {"device_id": f"dev-{i % 37}", "timestamp": 1_700_000_000 + i, "payload": {"i": i}}


def steady_producer(bootstrap: str, topic: str, start: int, count: int, per_second: int) -> threading.Thread:
    def run():
        chunk = per_second // 10
        for first in range(start, start + count, chunk):
            produce(bootstrap, topic, messages(first, min(chunk, start + count - first)))
            time.sleep(0.1)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("stop_mode", ["fast", "immediate"])
def test_database_outage_pauses_the_sink_which_resumes_by_itself_exactly_once(
        kafka_bootstrap, private_pg, new_topic, tmp_path, caplog, stop_mode):
    caplog.set_level(logging.INFO)
    dsn = private_pg.dsn()
    create_tables(dsn)
    topic = new_topic(partitions=3)
    backlog, streamed, outage = 3_000, 4_000, 10.0
    total = backlog + streamed
    produce(kafka_bootstrap, topic, messages(0, backlog), key=lambda m: m["device_id"].encode())
    connector = write_connector(tmp_path, name="outage", topic=topic, max_rows=MAX_ROWS, max_wait_ms=100)
    # An outage longer than max.poll.interval.ms: a member that stopped polling would be expelled.
    env = sink_env(kafka_bootstrap, dsn, SINKFRAME_KAFKA_MAX_POLL_INTERVAL_MS="7000")

    sink = InProcessSink([connector], env).start()
    try:
        wait_for(lambda: row_counts(dsn)[0] >= 1_000, timeout=30, message="rows before the outage")
        producer = steady_producer(kafka_bootstrap, topic, backlog, streamed, per_second=400)
        task = sink.tasks[0]
        assignments = task.stats.assignments

        private_pg.stop(stop_mode)
        down_at = time.monotonic()
        # The consumer pauses once the writer has kept the next batch waiting (the
        # first attempt may still be waiting for a connection); then the writer retries.
        wait_for(lambda: task.stats.paused and task.stats.state == "waiting-for-database", timeout=15,
                 message="the consumer to pause and the writer to wait for the database")
        while time.monotonic() - down_at < outage:
            assert task.stats.paused
            assert task.builder.batch.message_count <= MAX_ROWS  # memory: the batch being built stops growing
            time.sleep(0.2)
        private_pg.start()
        up_at = time.monotonic()
        wait_for(lambda: not task.stats.paused, timeout=15, message="the sink to resume")
        resumed_after = time.monotonic() - up_at

        producer.join(30)
        try:
            wait_for(lambda: row_counts(dsn)[0] >= total, timeout=40, message=f"all {total} rows")
        except AssertionError as err:  # say where the sink stands, for whoever reads the CI log
            per_partition = query(dsn, "SELECT source_partition, count(*), max(source_offset) FROM iot_raw_data "
                                       "GROUP BY 1 ORDER BY 1")
            stored = query(dsn, "SELECT partition, next_offset FROM sinkframe_offsets ORDER BY 1")
            raise AssertionError(f"{err}: rows per partition (count, max offset) {per_partition}; stored {stored}; "
                                 f"positions {task.positions.stored}; state {task.stats.state}, paused "
                                 f"{task.stats.paused}, fenced {task.stats.fenced}, retries "
                                 f"{task.stats.write_retries}, messages {task.stats.messages}") from None
        time.sleep(0.5)  # a duplicate would land within a batch interval
        assert task.stats.assignments == assignments, "the member was expelled and rejoined during the outage"
        assert task.stats.write_retries > 0
    finally:
        sink.stop()
        sink.join(30)
    assert row_counts(dsn) == (total, total)
    assert query(dsn, "SELECT sum(next_offset) FROM sinkframe_offsets") == [(total,)]
    assert not any("max.poll" in r.getMessage() or "MAX_POLL" in r.getMessage() for r in caplog.records)
    logging.getLogger(__name__).warning("database back after %.1fs outage: sink resumed in %.2fs",
                                        outage, resumed_after)
    assert resumed_after < 8
