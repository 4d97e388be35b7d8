"""A sink started while its database is down starts anyway, waits, and consumes once the database is up.

The server is one of the test's own (PrivatePostgres), stopped before the sink starts:
connections are refused (a partition, where they time out, is in test_partition.py).
What runs at start against the database (schema, framework tables, the live-table
check) runs once it answers, before anything is consumed.
"""
from __future__ import annotations

import json

import pytest

from sinkframe.devservices import free_port, produce

from sinktest.config import sink_env, write_connector
from sinktest.db import row_counts
from sinktest.monitor import http_get
from sinktest.paths import REPO
from sinktest.sinks import start_sink_process
from sinktest.waiting import wait_for

pytestmark = pytest.mark.slow


def test_a_sink_started_before_its_database_waits_then_provisions_and_consumes(
        private_pg, kafka_bootstrap, new_topic, tmp_path):
    dsn = private_pg.dsn()
    private_pg.stop("fast")
    topic = new_topic()
    produce(kafka_bootstrap, topic, [{"device_id": "d", "payload": {"i": i}} for i in range(400)])
    connector = write_connector(tmp_path, name="early", topic=topic, max_rows=100, max_wait_ms=100)
    port, log = free_port(), tmp_path / "sink.log"
    sink = start_sink_process([connector], sink_env(kafka_bootstrap, dsn, schema_dir=REPO / "schema"), log,
                              "--metrics-port", str(port))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: log.read_text().count("waiting for the database") >= 2, timeout=30,
                 message="two logged attempts")
        assert "password" not in log.read_text() or "password=***" in log.read_text()
        status, body = http_get(url + "/readyz")
        assert status == 503 and any(r.startswith("starting: waiting for the database")
                                     for r in json.loads(body)["reasons"]), body
        assert http_get(url + "/healthz")[0] == 200
        assert sink.poll() is None, log.read_text()[-2000:]
        private_pg.start()
        # The tables do not exist until the sink provisions them, once the database answers.
        wait_for(lambda: _rows_or_none(dsn) == 400, timeout=60, message="the rows, after provisioning")
        wait_for(lambda: http_get(url + "/readyz")[0] == 200, timeout=30, message="ready")
    finally:
        sink.terminate()
        code = sink.wait(30)
    assert code == 0, log.read_text()[-3000:]
    assert row_counts(dsn) == (400, 400)
    assert "schema: " in log.read_text()


def _rows_or_none(dsn: str):
    import psycopg

    try:
        return row_counts(dsn)[0]
    except psycopg.Error:  # not provisioned yet
        return None
