"""The database is cut while the sink is idle, then heals: the next write does not hang on a dead idle connection.

The pool checks an idle connection before it gives it out. One opened before a
partition or failover stays dead after the heal, and without a client-side
bound that check (an empty query) waits for ever inside `getconn`, before any
write has a connection to bound. The check is bounded (runner.check_pooled_connection):
the dead connection is discarded and the write goes through on a new one.
"""
from __future__ import annotations

import logging
import time

import pytest

from sinkframe.devservices import produce
from sinkframe.pipeline.runner import POOL_CHECK_SECONDS as CHECK_TIMEOUT_SECONDS

from sinktest.config import sink_env, write_connector
from sinktest.db import create_tables, query, row_counts
from sinktest.liveness import messages, proxy_for, through
from sinktest.sinks import InProcessSink
from sinktest.waiting import wait_for

pytestmark = pytest.mark.slow


def test_after_a_cut_while_idle_the_next_write_does_not_hang_on_a_dead_pooled_connection(
        kafka_bootstrap, pg_dsn, new_topic, tmp_path):
    create_tables(pg_dsn)
    topic = new_topic(partitions=1)
    produce(kafka_bootstrap, topic, messages(0, 100))
    connector = write_connector(tmp_path, name="idle-cut", topic=topic, max_rows=100, max_wait_ms=50)
    with proxy_for(pg_dsn) as proxy:
        env = sink_env(kafka_bootstrap, through(proxy, pg_dsn))
        with InProcessSink([connector], env) as sink:
            wait_for(lambda: row_counts(pg_dsn)[0] == 100, timeout=30, message="the first messages")
            proxy.blackhole()  # nothing in flight: only the pool's idle connection is cut
            time.sleep(1.0)
            proxy.heal()
            healed_at = time.monotonic()
            produce(kafka_bootstrap, topic, messages(100, 100))
            wait_for(lambda: row_counts(pg_dsn)[0] == 200, timeout=CHECK_TIMEOUT_SECONDS + 30,
                     message="the next messages after the heal")
            recovered_after = time.monotonic() - healed_at
            time.sleep(0.5)  # a duplicate would land within a batch interval
            assert sink.tasks[0].failure is None
    assert row_counts(pg_dsn) == (200, 200)
    assert query(pg_dsn, "SELECT next_offset FROM sinkframe_offsets") == [(200,)]
    logging.getLogger(__name__).warning("written %.1fs after the heal (pool check bound %gs)", recovered_after,
                                        CHECK_TIMEOUT_SECONDS)
