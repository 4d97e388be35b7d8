"""kill -9 while the writer thread has a batch in flight and the consumer thread builds the next one.

Every COPY into the table is slowed by a statement trigger, so that each write
stays in flight long enough to be killed in the middle of it, while a backlog
keeps the consumer thread fetching and mapping the next batch. Whatever moment
the kill lands on, the restarted sink ends with every message exactly once.
"""
from __future__ import annotations

import random
import signal
import time

import psycopg
import pytest

from sinkframe.devservices import produce

from sinktest.config import sink_env, write_connector
from sinktest.db import create_tables, query, row_counts
from sinktest.sinks import run_process_until, start_sink_process
from sinktest.waiting import wait_for

pytestmark = pytest.mark.slow

SEED = 20261201
KILLS = 4
SLOW_WRITE = """
CREATE FUNCTION slow_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_sleep(0.4); RETURN NULL; END $$;
CREATE TRIGGER slow_write BEFORE INSERT ON iot_raw_data FOR EACH STATEMENT EXECUTE FUNCTION slow_write();
"""
IN_FLIGHT = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state = 'active' "
             "AND query LIKE 'COPY%iot_raw_data%'")


def messages(count: int):
    for i in range(count):
        yield {"device_id": f"dev-{i % 50}", "timestamp": 1_700_000_000 + i, "payload": {"i": i}}


def test_kill9_during_a_write_in_flight_while_the_next_batch_is_built(kafka_bootstrap, pg_dsn, new_topic,
                                                                       tmp_path):
    rng = random.Random(SEED)
    create_tables(pg_dsn)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(SLOW_WRITE)
    topic = new_topic(partitions=3)
    total = 12_000
    produce(kafka_bootstrap, topic, messages(total), key=lambda m: m["device_id"].encode())
    connector = write_connector(tmp_path, name="inflight", topic=topic, max_rows=1_000, max_wait_ms=50)
    env = sink_env(kafka_bootstrap, pg_dsn, SINKFRAME_KAFKA_SESSION_TIMEOUT_MS="2000",
                   SINKFRAME_KAFKA_HEARTBEAT_INTERVAL_MS="500")
    log = tmp_path / "sink.log"

    killed_in_flight = 0
    for kill in range(KILLS):
        sink = start_sink_process([connector], env, log)
        wait_for(lambda: query(pg_dsn, IN_FLIGHT)[0][0] > 0, timeout=40,
                 message=f"run {kill + 1} to have a write in flight")
        time.sleep(rng.uniform(0.0, 0.3))  # somewhere inside the write's 0.4 s
        in_flight = query(pg_dsn, IN_FLIGHT)[0][0]
        sink.send_signal(signal.SIGKILL)
        sink.wait(10)
        killed_in_flight += in_flight > 0
        landed, distinct = row_counts(pg_dsn)
        assert landed == distinct, f"duplicate rows after kill {kill + 1}"
        assert landed < total, "the backlog was drained before the kill: nothing was in flight"

    assert killed_in_flight >= KILLS // 2, "too few kills landed while a write was in flight"
    run_process_until([connector], env, log, lambda: row_counts(pg_dsn)[0] >= total, timeout=90,
                      message=f"all {total} rows")
    assert row_counts(pg_dsn) == (total, total), log.read_text()[-3000:]
    assert query(pg_dsn, "SELECT sum(next_offset) FROM sinkframe_offsets") == [(total,)]
    assert query(pg_dsn, "SELECT count(DISTINCT payload->>'i') FROM iot_raw_data") == [(total,)]

