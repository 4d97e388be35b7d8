"""A write stuck on a dead connection is given up after the write timeout and retried once the database answers.

The database sits behind a FaultProxy. A write is held in flight (a slowed
COPY), the proxy swallows every byte from then on (no reset: the client's
socket stays open and its receive waits for ever), then heals with the old
connections dead, as after a failover. Without a bound the sink would wait on
that connection for good; with one, the connection is shut and thrown away and
the batch is written on a new one, exactly once.
"""
from __future__ import annotations

import logging
import time

import psycopg
import pytest

from sinkframe.devservices import produce

from sinktest.config import sink_env, write_connector
from sinktest.db import create_tables, query, row_counts
from sinktest.liveness import IN_FLIGHT, SLOW_WRITES, messages, proxy_for, slow_writes, through
from sinktest.sinks import InProcessSink
from sinktest.waiting import wait_for

pytestmark = pytest.mark.slow

WRITE_TIMEOUT = 4.0


def test_a_write_stuck_on_a_dead_connection_is_given_up_after_the_bound_and_retried_exactly_once(
        kafka_bootstrap, pg_dsn, new_topic, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    create_tables(pg_dsn)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(SLOW_WRITES)
    topic = new_topic(partitions=2)
    first, second = 600, 400
    produce(kafka_bootstrap, topic, messages(0, first))
    connector = write_connector(tmp_path, name="bound", topic=topic, max_rows=200, max_wait_ms=50)
    with proxy_for(pg_dsn) as proxy:
        env = sink_env(kafka_bootstrap, through(proxy, pg_dsn),
                       SINKFRAME_WRITE_TIMEOUT_SECONDS=str(WRITE_TIMEOUT), SINKFRAME_SHUTDOWN_TIMEOUT_SECONDS="10")
        with InProcessSink([connector], env) as sink:
            task = sink.tasks[0]
            wait_for(lambda: row_counts(pg_dsn)[0] == first, timeout=30, message="the first messages")
            pool = task.writer.pool

            slow_writes(pg_dsn, 1.5)
            produce(kafka_bootstrap, topic, messages(first, second))
            wait_for(lambda: query(pg_dsn, IN_FLIGHT)[0][0] > 0, timeout=15, message="a write in flight")
            proxy.blackhole()  # the write's reply is swallowed: its connection is dead from now on
            cut_at = time.monotonic()
            time.sleep(1.0)
            slow_writes(pg_dsn, None)  # (directly, not through the proxy)
            proxy.heal()  # new connections work; the old ones stay dead

            wait_for(lambda: row_counts(pg_dsn)[0] >= first + second, timeout=WRITE_TIMEOUT + 30,
                     message="the rest, written on a new connection")
            recovered_after = time.monotonic() - cut_at
            time.sleep(1.0)  # a duplicate would land within a batch interval
            assert task.stats.state == "running" and task.failure is None
            assert task.stats.write_retries >= 1
            assert pool.get_stats().get("returns_bad", 0) >= 1, "the given-up connection went back to the pool"
    assert row_counts(pg_dsn) == (first + second, first + second)
    assert query(pg_dsn, "SELECT sum(next_offset) FROM sinkframe_offsets") == [(first + second,)]
    given_up = [r.getMessage() for r in caplog.records if "giving up a database connection" in r.getMessage()]
    assert given_up and "write timeout" in given_up[0]
    # Given up at the bound, not before, and retried soon after.
    assert WRITE_TIMEOUT - 1.5 <= recovered_after < WRITE_TIMEOUT + 20
    logging.getLogger(__name__).warning("a dead connection was given up and the batch written %.1fs after the cut",
                                        recovered_after)
