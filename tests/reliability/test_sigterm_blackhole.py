"""SIGTERM while a write hangs on a database that vanished without a reset: the sink exits within its shutdown timeout.

(SIGTERM while the database refuses connections is test_sigterm_flush.py.) Here
the database sits behind a FaultProxy that swallows every byte: the write in
flight waits on its connection, which no error will ever end. The write bound is
set far beyond the test, so only the shutdown timeout can end it. The sink must
exit 0 within that timeout, commit nothing of the open transaction, and a new
run must write every message exactly once.
"""
from __future__ import annotations

import logging
import signal
import time

import psycopg
import pytest

from sinkframe.devservices import produce

from sinktest.config import sink_env, write_connector
from sinktest.db import create_tables, query, row_counts
from sinktest.liveness import IN_FLIGHT, SLOW_WRITES, messages, proxy_for, slow_writes, through
from sinktest.sinks import run_process_until, start_sink_process
from sinktest.waiting import wait_for

pytestmark = pytest.mark.slow

SHUTDOWN_TIMEOUT = 6.0
SLACK = 6.0  # interpreter exit, a loaded machine


def test_sigterm_during_a_blackhole_exits_within_the_shutdown_timeout_and_the_next_run_loses_nothing(
        kafka_bootstrap, pg_dsn, new_topic, tmp_path):
    create_tables(pg_dsn)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(SLOW_WRITES)
    topic = new_topic(partitions=2)
    first, second = 400, 600
    total = first + second
    produce(kafka_bootstrap, topic, messages(0, first))
    connector = write_connector(tmp_path, name="term-blackhole", topic=topic, max_rows=200, max_wait_ms=50)
    log = tmp_path / "sink.log"
    with proxy_for(pg_dsn) as proxy:
        env = sink_env(kafka_bootstrap, through(proxy, pg_dsn), SINKFRAME_WRITE_TIMEOUT_SECONDS="300",
                       SINKFRAME_SHUTDOWN_TIMEOUT_SECONDS=str(SHUTDOWN_TIMEOUT))
        sink = start_sink_process([connector], env, log)
        try:
            wait_for(lambda: row_counts(pg_dsn)[0] == first, timeout=30, message="the first messages")
            slow_writes(pg_dsn, 1.0)
            produce(kafka_bootstrap, topic, messages(first, second))
            wait_for(lambda: query(pg_dsn, IN_FLIGHT)[0][0] > 0, timeout=15, message="a write in flight")
            proxy.blackhole()
            time.sleep(1.5)  # the write's reply is swallowed: it waits on a dead connection
            written_before = row_counts(pg_dsn)[0]
            sink.send_signal(signal.SIGTERM)
            signalled_at = time.monotonic()
            exit_code = sink.wait(SHUTDOWN_TIMEOUT + SLACK + 10)
            exited_after = time.monotonic() - signalled_at
        finally:
            if sink.poll() is None:
                sink.kill()
                sink.wait(10)
        assert exit_code == 0, log.read_text()[-3000:]
        assert exited_after < SHUTDOWN_TIMEOUT + SLACK, f"exited {exited_after:.1f}s after SIGTERM"
        logging.getLogger(__name__).warning("exited %.1fs after SIGTERM (shutdown timeout %gs)", exited_after,
                                            SHUTDOWN_TIMEOUT)
        text = log.read_text()
        assert "will be read again on the next start" in text
        proxy.heal()
        slow_writes(pg_dsn, None)
        time.sleep(0.5)
        # The open transaction did not commit: nothing landed after the signal.
        assert row_counts(pg_dsn)[0] == written_before < total

        run_process_until([connector], env, log, lambda: row_counts(pg_dsn)[0] >= total, timeout=40,
                          message=f"all {total} rows after the restart")
    assert row_counts(pg_dsn) == (total, total)
    assert query(pg_dsn, "SELECT sum(next_offset) FROM sinkframe_offsets") == [(total,)]


def test_sigterm_during_a_slow_write_gives_it_up_with_the_batch_built_after_it_and_loses_nothing(
        kafka_bootstrap, pg_dsn, new_topic, tmp_path):
    """The database answers, but the write in flight outlasts half the shutdown timeout: it is given up.

    The batch built meanwhile expects the offsets that write was to store, so it
    must go too (task.py rule 2), however fast the database is by then: written,
    it would commit past the given-up write's records.
    """
    create_tables(pg_dsn)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(SLOW_WRITES)
    topic = new_topic(partitions=1)
    first, second = 300, 900
    total = first + second
    produce(kafka_bootstrap, topic, messages(0, first))
    connector = write_connector(tmp_path, name="term-slow", topic=topic, max_rows=300, max_wait_ms=50)
    log = tmp_path / "sink.log"
    env = sink_env(kafka_bootstrap, pg_dsn, SINKFRAME_SHUTDOWN_TIMEOUT_SECONDS=str(SHUTDOWN_TIMEOUT))
    sink = start_sink_process([connector], env, log)
    try:
        wait_for(lambda: row_counts(pg_dsn)[0] == first, timeout=30, message="the first messages")
        slow_writes(pg_dsn, 30.0)
        produce(kafka_bootstrap, topic, messages(first, second))
        wait_for(lambda: query(pg_dsn, IN_FLIGHT)[0][0] > 0, timeout=15, message="a slow write in flight")
        time.sleep(1.0)  # the next batch fills meanwhile
        sink.send_signal(signal.SIGTERM)
        wait_for(lambda: "will be read again on the next start" in log.read_text(), timeout=SHUTDOWN_TIMEOUT + SLACK,
                 message="the slow write to be given up")
        slow_writes(pg_dsn, None)  # whatever is written from now on is written at once
        assert sink.wait(SHUTDOWN_TIMEOUT + SLACK + 10) == 0, log.read_text()[-3000:]
    finally:
        if sink.poll() is None:
            sink.kill()
            sink.wait(10)
    assert "will be read again on the next start" in log.read_text()
    stored = query(pg_dsn, "SELECT sum(next_offset) FROM sinkframe_offsets")[0][0]
    assert row_counts(pg_dsn) == (stored, stored), "rows and stored offsets disagree: records were skipped"

    run_process_until([connector], env, log, lambda: row_counts(pg_dsn)[0] >= total, timeout=40,
                      message=f"all {total} rows after the restart")
    assert row_counts(pg_dsn) == (total, total)
    assert query(pg_dsn, "SELECT sum(next_offset) FROM sinkframe_offsets") == [(total,)]
