"""A connector that runs but makes no progress while messages wait is reported as stalled.

The stall is a real one: another session holds a lock on the table that keeps
writers out (readers in), so the sink's write waits inside a healthy connection,
the server answers nothing, and the connector still says it is running.
"""
from __future__ import annotations

import psycopg
import pytest

from sinkframe.config.settings import Settings
from sinkframe.devservices import free_port, produce
from sinkframe.ops.status import collect_status

from sinktest.config import sink_env, write_connector
from sinktest.db import create_tables, row_counts
from sinktest.monitor import metric_sum, ready, scrape
from sinktest.sinks import InProcessSink
from sinktest.waiting import wait_for


def messages(start: int, count: int):
    return [{"device_id": "d", "payload": {"i": i}} for i in range(start, start + count)]


@pytest.mark.slow
def test_a_write_that_makes_no_progress_is_told_from_running(pg_dsn, kafka_bootstrap, new_topic, tmp_path):
    create_tables(pg_dsn)
    topic = new_topic()
    produce(kafka_bootstrap, topic, messages(0, 200))
    connector = write_connector(tmp_path, name="stall", topic=topic, max_rows=100, max_wait_ms=100)
    env = sink_env(kafka_bootstrap, pg_dsn, SINKFRAME_STALL_AFTER="3")
    with InProcessSink([connector], env, metrics_port=free_port()) as sink:
        wait_for(lambda: row_counts(pg_dsn)[0] == 200, timeout=30, message="the first rows")
        wait_for(lambda: ready(sink.url)[0] == 200, timeout=20, message="ready")
        locker = psycopg.connect(pg_dsn)
        try:
            locker.execute("LOCK TABLE iot_raw_data IN SHARE MODE")
            produce(kafka_bootstrap, topic, messages(200, 300))

            def stalled():
                status, body = ready(sink.url)
                return body if status == 503 and body["connectors"]["stall"]["state"] == "stalled" else None

            body = wait_for(stalled, timeout=40, message="/readyz to say the connector is stalled")
            assert "stalled: " in " ".join(body["reasons"]) and "nothing written for" in body["connectors"]["stall"]["stalled"]
            assert body["database"]["ok"], "the database answers: a stall is not an outage"
            samples = scrape(sink.url)
            assert metric_sum(samples, "sinkframe_connector_state", connector="stall", state="stalled") == 1
            assert metric_sum(samples, "sinkframe_connector_state", connector="stall", state="running") == 0
            # `sinkframe status`, from outside the sink, sees no stored offset advance while messages wait.
            report = collect_status([connector], Settings.from_env(env))
            assert report.connectors[0].progress.startswith("stalled: "), report.connectors[0]
        finally:
            locker.rollback()
            locker.close()
        wait_for(lambda: row_counts(pg_dsn)[0] == 500, timeout=30, message="the rows once the lock is gone")
        wait_for(lambda: ready(sink.url)[0] == 200, timeout=30, message="ready again")
        samples = scrape(sink.url)
        assert metric_sum(samples, "sinkframe_connector_state", connector="stall", state="running") == 1
        assert collect_status([connector], Settings.from_env(env)).connectors[0].progress == "up to date"
    assert row_counts(pg_dsn) == (500, 500)
