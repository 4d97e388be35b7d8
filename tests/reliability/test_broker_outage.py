"""The broker process restarts: the sink reconnects by itself and goes on with new messages.

Tansu keeps its data in memory, so its restart also loses the topic and the
consumer group: offsets start again at 0. The database's stored offset decides
what is new: the sink rejoins, seeks to the stored offset and ingests everything
from there; records at offsets the database already holds are never written
twice. (A consumer reset behind the stored offset, e.g. by auto.offset.reset
after an out-of-range fetch, skips them: see test_task_positions.py.)
"""
from __future__ import annotations

import time

import pytest

from sinkframe.devservices import create_topics, produce

from sinktest.config import sink_env, write_connector
from sinktest.db import create_tables, query, row_counts
from sinktest.sinks import InProcessSink
from sinktest.waiting import wait_for

pytestmark = pytest.mark.slow


def generation(gen: int, count: int):
    return ({"device_id": f"gen{gen}", "timestamp": 1_700_000_000 + i, "payload": {"gen": gen, "i": i}}
            for i in range(count))


def test_broker_restart_the_sink_reconnects_and_ingests_new_messages(tansu_broker, pg_dsn, new_topic, tmp_path):
    topic = f"broker-restart.{time.monotonic_ns()}"
    create_topics(tansu_broker.bootstrap, [topic], partitions=1)
    create_tables(pg_dsn)
    produce(tansu_broker.bootstrap, topic, generation(1, 300))
    connector = write_connector(tmp_path, name="restart", topic=topic, max_rows=100, max_wait_ms=100)
    sink = InProcessSink([connector], sink_env(tansu_broker.bootstrap, pg_dsn)).start()
    try:
        wait_for(lambda: row_counts(pg_dsn)[0] == 300, timeout=30, message="the first 300 rows")

        tansu_broker.restart()  # memory-only: topic, messages and group are gone
        create_topics(tansu_broker.bootstrap, [topic], partitions=1)
        produce(tansu_broker.bootstrap, topic, generation(2, 800))

        wait_for(lambda: row_counts(pg_dsn)[0] >= 800, timeout=60, message="new messages after the restart")
        time.sleep(1.0)  # anything written twice would land within a batch interval
        assert sink.tasks[0].failure is None and sink.thread.is_alive()
    finally:
        sink.stop()
        sink.join(30)
    assert row_counts(pg_dsn) == (800, 800)
    by_generation = query(pg_dsn, "SELECT payload->>'gen', min(source_offset), max(source_offset), count(*) "
                                  "FROM iot_raw_data GROUP BY 1 ORDER BY 1")
    # Offsets 0..299 of the new log collide with what is stored and are skipped; 300.. are new.
    assert by_generation == [("1", 0, 299, 300), ("2", 300, 799, 500)]
    assert query(pg_dsn, "SELECT next_offset FROM sinkframe_offsets") == [(800,)]
