"""/metrics, /healthz and /readyz of a real pipeline ingesting simulator traffic; the alert families
from a collector over stats filled by hand (the pipeline that fills them is tested in tests/alerts)."""
from __future__ import annotations

import io
import subprocess

import psycopg
import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from sinkframe.devservices import free_port
from sinkframe.errors import SinkframeError
from sinkframe.ops.metrics import BatchLatency, PipelineCollector, new_registry
from sinkframe.ops.runtime import RunMonitor
from sinkframe.pipeline.stats import ConnectorStats
from sinkframe.simulator import Fleet

from sinktest.config import sink_settings
from sinktest.db import count_rows
from sinktest.monitor import http_get, metric_sum, ready, scrape
from sinktest.paths import CONFIGS
from sinktest.sinks import InProcessSink
from sinktest.traffic import send
from sinktest.waiting import wait_for

ALL_CONFIGS = [CONFIGS / "raw.yaml", CONFIGS / "enriched.yaml", CONFIGS / "smart_breaker.yaml"]
TABLES = {"raw": "iot_raw_data", "enriched": "iot_enriched_data", "smart-breaker": "smart_breaker_data"}


def all_written(url, expected):
    """The scrape once `expected` messages are written and fresh watermarks show no lag, else None."""
    samples = scrape(url)
    if metric_sum(samples, "sinkframe_messages_total") != expected:
        return None
    for (name, labels), value in samples.items():
        if name == "sinkframe_stored_offset" and \
                samples.get(("sinkframe_partition_high_watermark", labels)) != value:
            return None
    return samples if metric_sum(samples, "sinkframe_consumer_lag_messages") == 0 else None


@pytest.mark.slow
def test_metrics_follow_the_pipeline_and_match_the_database(kafka_bootstrap, pg_dsn, topics, settings, promtool):
    fleet = Fleet(devices=25, seed=21, malformed_rate=0.02)
    progress = io.StringIO()
    with InProcessSink(ALL_CONFIGS, settings, metrics_port=free_port(), progress=True, stream=progress) as sink:
        first = send(kafka_bootstrap, fleet, topics, 1500)
        before = wait_for(lambda: all_written(sink.url, 1500), timeout=60, message="first 1500 messages")
        send(kafka_bootstrap, fleet, topics, 2500)
        after = wait_for(lambda: all_written(sink.url, 4000), timeout=60, message="all 4000 messages")
        status, page = http_get(sink.url + "/metrics")

    # Counters moved by what was sent.
    assert metric_sum(before, "sinkframe_messages_total") == sum(first.by_topic.values())
    for connector in TABLES:
        assert metric_sum(after, "sinkframe_batches_total", connector=connector) > \
            metric_sum(before, "sinkframe_batches_total", connector=connector)

    # ... and match the database.
    for connector, table in TABLES.items():
        assert metric_sum(after, "sinkframe_rows_written_total", connector=connector, table=table) == \
            count_rows(pg_dsn, table)
    malformed = sum(n for (_, tag), n in fleet.counts.items() if tag == "malformed")
    assert malformed > 0
    assert metric_sum(after, "sinkframe_dead_letters_total") == count_rows(pg_dsn, "sinkframe_dead_letters") \
        == metric_sum(after, "sinkframe_errors_total") == malformed
    # Every malformed message left its mapper's fast path, and none of them through a fast-path bug.
    assert metric_sum(after, "sinkframe_fast_path_fallbacks_total") >= malformed
    assert metric_sum(after, "sinkframe_fast_path_fallbacks_total", reason="bug") == 0
    with psycopg.connect(pg_dsn) as conn:
        stored = dict(((t, p), o) for t, p, o in conn.execute(
            "SELECT topic, partition, next_offset FROM sinkframe_offsets").fetchall())
    for (name, labels), value in after.items():
        if name == "sinkframe_stored_offset":
            labels = dict(labels)
            assert stored[(labels["topic"], int(labels["partition"]))] == value
            assert after[("sinkframe_partition_high_watermark", frozenset(labels.items()))] == value
    assert len([k for k in after if k[0] == "sinkframe_stored_offset"]) == 9  # 3 topics x 3 partitions

    # Latency histogram: one observation per batch.
    assert metric_sum(after, "sinkframe_batch_write_seconds_count") == metric_sum(after, "sinkframe_batches_total")
    assert metric_sum(after, "sinkframe_batch_write_seconds_sum") > 0
    assert metric_sum(after, "sinkframe_database_up") == 1
    assert metric_sum(after, "sinkframe_db_pool_max") == settings.pool_size
    assert metric_sum(after, "sinkframe_connector_state", state="running") == 3
    assert metric_sum(after, "sinkframe_event_time_lag_seconds") >= 0
    assert metric_sum(after, "process_resident_memory_bytes") > 0

    # The exposition is valid for Prometheus itself.
    assert status == 200
    check = subprocess.run([promtool, "check", "metrics"], input=page, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr

    # The live line was drawn.
    assert "msg/s" in progress.getvalue() and "lag " in progress.getvalue()


@pytest.mark.slow
def test_readyz_flips_during_a_database_outage_and_back(monkeypatch, kafka_bootstrap, topics, dedicated_postgres):
    settings = sink_settings(monkeypatch, kafka_bootstrap, dedicated_postgres.dsn(), topics)
    fleet = Fleet(devices=5, seed=3, kinds=("smart_breaker",), sensor_share=0, late_rate=0, out_of_order_rate=0)
    with InProcessSink([CONFIGS / "smart_breaker.yaml"], settings, metrics_port=free_port()) as sink:
        status, body = wait_for(lambda: (lambda r: r if r[0] == 200 else None)(ready(sink.url)), timeout=30,
                                message="ready")
        assert body["status"] == "ready" and body["database"]["ok"]
        send(kafka_bootstrap, fleet, topics, 50)
        wait_for(lambda: metric_sum(scrape(sink.url), "sinkframe_messages_total") == 50, timeout=30,
                 message="50 messages")

        dedicated_postgres.stop("immediate")
        try:
            status, body = wait_for(lambda: (lambda r: r if r[0] == 503 else None)(ready(sink.url)), timeout=10,
                                    message="not ready")
            assert any(r.startswith("database unreachable") for r in body["reasons"]), body
            send(kafka_bootstrap, fleet, topics, 50)  # the writer finds out too, and pauses
            status, body = wait_for(
                lambda: (lambda r: r if "connector smart-breaker is waiting-for-database" in r[1]["reasons"]
                         else None)(ready(sink.url)), timeout=30, message="connector waiting for the database")
            assert status == 503
            assert http_get(sink.url + "/healthz")[0] == 200  # alive, just not ready
            samples = scrape(sink.url)
            assert metric_sum(samples, "sinkframe_database_up") == 0
            assert metric_sum(samples, "sinkframe_connector_paused") == 1
        finally:
            dedicated_postgres.start()

        wait_for(lambda: ready(sink.url)[0] == 200, timeout=60, message="ready again")
        samples = wait_for(lambda: all_written(sink.url, 100), timeout=60, message="the rest written")
        assert metric_sum(samples, "sinkframe_write_retries_total") >= 1
    assert count_rows(dedicated_postgres.dsn(), "smart_breaker_data") == 100


def test_endpoint_answers_before_the_pipeline_starts():
    monitor = RunMonitor(metrics_port=free_port(), progress=False, metrics_host="127.0.0.1")
    try:
        url = f"http://127.0.0.1:{monitor.port}"
        assert http_get(url + "/healthz")[0] == 200
        status, body = ready(url)
        assert status == 503 and body["reasons"] == ["starting: connectors not running yet"]
        status, page = http_get(url + "/metrics")
        assert status == 200 and "sinkframe_build_info" in page
        assert http_get(url + "/nothing")[0] == 404
        with pytest.raises(SinkframeError, match="--metrics-port"):
            RunMonitor(metrics_port=monitor.port, progress=False, metrics_host="127.0.0.1")
    finally:
        monitor.close()


def test_no_port_no_progress_means_nothing_runs():
    monitor = RunMonitor(metrics_port=None, progress=False)
    monitor.started(object())  # must not touch the pipeline at all
    monitor.tick()
    monitor.close()
    assert monitor.port is None


def collected(*stats: ConnectorStats) -> tuple[dict, str]:
    """What the collector exposes for tasks with these stats: (samples as `scrape` gives them, the page)."""
    source = type("Source", (), {
        "pipeline": type("Pipeline", (), {"tasks": [type("Task", (), {"stats": s})() for s in stats],
                                          "pool": None})(),
        "watermarks": None, "probe": None, "latency": BatchLatency()})()
    registry = new_registry()
    registry.register(PipelineCollector(source))
    page = generate_latest(registry).decode()
    samples = {(sample.name, frozenset(sample.labels.items())): sample.value
               for family in text_string_to_metric_families(page) for sample in family.samples}
    return samples, page


def alert_samples(samples: dict, name: str) -> dict:
    return {tuple(sorted(labels)): value for (n, labels), value in samples.items() if n == name}


def test_alert_metrics_show_the_tasks_counters_with_zeros_for_known_alerts(promtool):
    breakers = ConnectorStats("smart-breaker", "breakers")
    # As the task keeps them: every rule listed (0 when nothing fires), transitions by (alert, state).
    breakers.alerts_firing.update({"overheat": 2, "tripped": 0, "low_voltage": 0})
    breakers.alert_transitions.update({("overheat", "firing"): 3, ("overheat", "resolved"): 1,
                                       ("tripped", "firing"): 1, ("tripped", "resolved"): 1})
    quiet = ConnectorStats("raw", "iot.raw")  # no rules: no alert series at all

    samples, page = collected(breakers, quiet)

    def labels(**kw):
        return tuple(sorted({"connector": "smart-breaker", **kw}.items()))

    assert alert_samples(samples, "sinkframe_alerts_firing") == {
        labels(alert="overheat"): 2, labels(alert="tripped"): 0, labels(alert="low_voltage"): 0}
    assert alert_samples(samples, "sinkframe_alert_transitions_total") == {
        labels(alert="overheat", state="firing"): 3, labels(alert="overheat", state="resolved"): 1,
        labels(alert="tripped", state="firing"): 1, labels(alert="tripped", state="resolved"): 1,
        labels(alert="low_voltage", state="firing"): 0, labels(alert="low_voltage", state="resolved"): 0}
    check = subprocess.run([promtool, "check", "metrics"], input=page, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr

