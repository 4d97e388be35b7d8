"""The operations tools on TimescaleDB: a real server with the sink's defaults, and the embedded
engine (one connection at a time), where the demo runs: there metrics and readiness must work
through the writer's single pool connection. Export and status must understand hypertables and
continuous aggregates on both.
"""
from __future__ import annotations

import io
import json
import subprocess
import time
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner

from sinkframe.cli import cli
from sinkframe.devservices import free_port
from sinkframe.ops.export import ExportRequest, export_to
from sinkframe.simulator import Fleet, produce

from sinktest.config import sink_settings
from sinktest.monitor import http_get, metric_sum, ready, scrape
from sinktest.paths import CONFIGS, REPO
from sinktest.sinks import InProcessSink
from sinktest.traffic import ONE_RECORD_PER_BATCH
from sinktest.waiting import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timescale]

CONFIG = CONFIGS / "smart_breaker.yaml"


def dashboard_queries() -> list[str]:
    """The panels' SQL on the tables this test's connectors write (the models' panel, on
    sinkframe_scores, is run by tests/models/test_models_e2e.py, where a model scores)."""
    dashboard = json.loads((REPO / "deploy/grafana/dashboards/sinkframe.json").read_text())
    return [t["rawSql"] for p in dashboard["panels"] for t in p.get("targets", [])
            if "rawSql" in t and "FROM sinkframe_scores" not in t["rawSql"]]


@pytest.fixture(params=["server", "engine"])
def ops_timescale(request):
    """The test's TimescaleDB (real, or the engine standing in), and the embedded engine itself."""
    if request.param == "engine":
        return request.getfixturevalue("timescale_engine")
    timescale = request.getfixturevalue("timescale")
    if timescale.engine:
        pytest.skip("no real TimescaleDB server: the engine case runs this on the engine")
    return timescale


def test_metrics_readiness_export_and_status_on_timescaledb(monkeypatch, kafka_bootstrap, ops_timescale,
                                                            topics, promtool):
    timescale = ops_timescale
    settings = sink_settings(monkeypatch, kafka_bootstrap, timescale.dsn, topics, SINKFRAME_PLAIN_POSTGRES="0",
                             **timescale.sink_env)
    now = time.time()
    fleet = Fleet(devices=4, seed=6, kinds=("smart_breaker",), sensor_share=0, late_rate=0, out_of_order_rate=0)
    report = produce(kafka_bootstrap, fleet, rate=None, topics=topics, config=ONE_RECORD_PER_BATCH,
                     backfill=(now - 3 * 3600, now, 120))
    assert report.delivered == report.sent == 4 * 90

    with InProcessSink([CONFIG], settings, metrics_port=free_port()) as sink:
        samples = wait_for(lambda: (lambda s: s if metric_sum(s, "sinkframe_messages_total") == 360 else None)(
            scrape(sink.url)), timeout=90, message="360 messages written")
        status, body = ready(sink.url)
        assert status == 200, body  # the probe borrowed the writer's connection
        assert any(name == "sinkframe_timescaledb_job_failures_total" for name, _ in samples)
        assert metric_sum(samples, "sinkframe_timescaledb_job_failures_total") == 0
        _, page = http_get(sink.url + "/metrics")
        check = subprocess.run([promtool, "check", "metrics"], input=page, capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr

    with timescale.connect() as conn:
        conn.execute("CALL refresh_continuous_aggregate('smart_breaker_hourly_stats', NULL, NULL)")
        assert conn.execute("SELECT count(*) FROM smart_breaker_data").fetchone()[0] == 360
        # The dashboard's SQL panels run, with Grafana's macros as Grafana expands them.
        for query in dashboard_queries():
            expanded = query.replace("$__timeFilter(bucket)", "bucket BETWEEN now() - interval '6 hours' AND now()")
            expanded = expanded.replace("$device", "'breaker-00000','breaker-00002'")
            assert conn.execute(expanded).fetchall(), query
    timescale.settle()

    out = io.BytesIO()
    since = datetime.fromtimestamp(now, timezone.utc) - timedelta(hours=5)
    until = datetime.fromtimestamp(now, timezone.utc) + timedelta(hours=1)
    result = export_to(settings, ExportRequest("smart_breaker_hourly_stats", since, until, fmt="json"), out)
    buckets = [json.loads(line) for line in out.getvalue().splitlines()]
    assert result.time_column == "bucket" and result.rows == len(buckets) >= 4 * 3
    assert sum(b["sample_count"] for b in buckets) == 360
    assert all(200 < b["avg_voltage_phase_a"] < 250 or 100 < b["avg_voltage_phase_a"] < 130 for b in buckets)
    timescale.settle()

    result = CliRunner().invoke(cli, ["status", str(CONFIG), "-o", "json"])
    assert result.exit_code == 0, result.output
    connector = json.loads(result.stdout)["connectors"][0]
    assert connector["schema"] == "up to date" and connector["lag"] == 0
