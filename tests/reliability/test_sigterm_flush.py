"""SIGTERM with the database down: the sink exits 0 within seconds, and the next run loses nothing.

(SIGTERM with a batch in flight and the database up is tests/e2e/test_crash_recovery.py.)
"""
from __future__ import annotations

import signal
import time

import pytest

from sinkframe.devservices import produce

from sinktest.config import sink_env, write_connector
from sinktest.db import create_tables, row_counts
from sinktest.sinks import start_sink_process
from sinktest.waiting import wait_for

pytestmark = pytest.mark.slow


def test_sigterm_while_the_database_is_down_exits_zero_and_the_next_run_loses_nothing(
        kafka_bootstrap, private_pg, new_topic, tmp_path):
    dsn = private_pg.dsn()
    create_tables(dsn)
    topic = new_topic()
    produce(kafka_bootstrap, topic, [{"device_id": "d", "payload": i} for i in range(300)])
    connector = write_connector(tmp_path, name="term-down", topic=topic, max_rows=100, max_wait_ms=50)
    env = sink_env(kafka_bootstrap, dsn)
    log = tmp_path / "sink.log"
    sink = start_sink_process([connector], env, log)
    wait_for(lambda: row_counts(dsn)[0] == 300, timeout=30, message="the first 300 rows")

    private_pg.stop("fast")
    produce(kafka_bootstrap, topic, [{"device_id": "d", "payload": i} for i in range(300, 500)])
    wait_for(lambda: "will retry" in log.read_text(), timeout=30, message="a failed write")
    sink.send_signal(signal.SIGTERM)
    started = time.monotonic()
    assert sink.wait(20) == 0, log.read_text()[-3000:]
    assert time.monotonic() - started < 10
    assert "will be read again on the next start" in log.read_text()

    private_pg.start()
    sink = start_sink_process([connector], env, log)
    try:
        wait_for(lambda: row_counts(dsn)[0] >= 500, timeout=30, message="the rest after the restart")
        time.sleep(0.5)
    finally:
        sink.send_signal(signal.SIGTERM)
        assert sink.wait(20) == 0
    assert row_counts(dsn) == (500, 500)
