"""The monitoring stack's files (no Docker here): they parse, refer to each other consistently,
Prometheus accepts its config and every PromQL expression, and the dashboard asks only for
metrics sinkframe exposes and columns the continuous aggregate has."""
from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from sinkframe.models.store import CREATE_SCORES_TABLE, SCORES_TABLE
from sinkframe.ops.metrics import BatchLatency, PipelineCollector, new_registry
from sinkframe.pipeline.stats import ConnectorStats
from sinkframe.schema import load_schema

from sinktest.paths import REPO

DEPLOY = REPO / "deploy"
COMPOSE = yaml.safe_load((DEPLOY / "docker-compose.monitoring.yml").read_text())
MAIN_COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
PROMETHEUS = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
DATASOURCES = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/sinkframe.yml").read_text())
PROVIDERS = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/sinkframe.yml").read_text())
DASHBOARD = json.loads((DEPLOY / "grafana/dashboards/sinkframe.json").read_text())
AGGREGATE = "smart_breaker_hourly_stats"


def panels():
    for panel in DASHBOARD["panels"]:
        yield panel
        yield from panel.get("panels", [])


def targets(datasource_type):
    return [t for p in panels() for t in p.get("targets", []) if t["datasource"]["type"] == datasource_type]


def test_compose_mounts_existing_files_and_scrapes_the_connector():
    services = COMPOSE["services"]
    assert {"prometheus", "grafana"} <= set(services)
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):  # relative to the project directory, the first -f file's folder
                assert (REPO / source).exists(), f"{source} is mounted but does not exist"
    connector = MAIN_COMPOSE["services"]["redpanda-connector"]
    port = str(connector["environment"]["SINKFRAME_METRICS_PORT"])
    job = next(j for j in PROMETHEUS["scrape_configs"] if j["job_name"] == "sinkframe")
    assert job["static_configs"][0]["targets"] == [f"redpanda-connector:{port}"]
    assert set(services["grafana"]["depends_on"]) <= set(services) | set(MAIN_COMPOSE["services"])
    mounts = {v.split(":")[1] for v in services["grafana"]["volumes"]}
    assert PROVIDERS["providers"][0]["options"]["path"] in mounts
    assert "/etc/grafana/provisioning" in mounts


def test_prometheus_accepts_the_config(promtool):
    result = subprocess.run([promtool, "check", "config", str(DEPLOY / "prometheus/prometheus.yml")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_datasource_reference_is_provisioned():
    provisioned = {d["uid"]: d["type"] for d in DATASOURCES["datasources"]}
    assert len(provisioned) == len(DATASOURCES["datasources"])
    references = [p["datasource"] for p in panels() if "datasource" in p]
    references += [t["datasource"] for p in panels() for t in p.get("targets", [])]
    references += [v["datasource"] for v in DASHBOARD["templating"]["list"] if "datasource" in v]
    assert references
    for ref in references:
        assert provisioned.get(ref["uid"]) == ref["type"], ref
    ids = [p["id"] for p in panels()]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("title", ["Messages/s", "Consumer lag", "Errors/s", "Batch write latency",
                                   "Alerts firing", "Alert transitions",
                                   "Voltage per phase", "Current per phase", "Temperature"])
def test_required_panels_exist(title):
    assert any(p["title"].startswith(title) and p.get("targets") for p in panels())


def test_promql_is_valid_and_uses_metrics_sinkframe_exposes(promtool, tmp_path):
    exprs = [t["expr"] for t in targets("prometheus")]
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:expr{i}", "expr": e} for i, e in enumerate(exprs)]}]}
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr

    exposed = exposed_sample_names()
    for expr in exprs:
        for name in re.findall(r"\b((?:sinkframe|process)_[a-z_]+)\b", expr):
            assert name in exposed, f"{name} (in {expr!r}) is not exposed"


def test_the_alert_panels_ask_for_the_alert_metrics_by_connector_and_alert():
    exprs = {p["title"]: [t["expr"] for t in p["targets"]] for p in panels()
             if p["title"].startswith(("Alerts firing", "Alert transitions"))}
    assert len(exprs) == 2, exprs
    firing = next(e for title, e in exprs.items() if title.startswith("Alerts firing"))
    moved = next(e for title, e in exprs.items() if title.startswith("Alert transitions"))
    assert any("sinkframe_alerts_firing" in e and "(connector, alert)" in e for e in firing), firing
    assert any("rate(sinkframe_alert_transitions_total" in e and "(connector, alert, state)" in e
               for e in moved), moved


def test_sql_panels_use_columns_of_the_aggregate():
    columns = set(load_schema(REPO / "schema").continuous_aggregates[AGGREGATE].column_names)
    queries = [t["rawSql"] for t in targets("grafana-postgresql-datasource")]
    queries += [v["query"] for v in DASHBOARD["templating"]["list"]]
    # The models' panel reads the scores table (sinkframe/models/store.py); the others the aggregate.
    on_scores = [q for q in queries if f"FROM {SCORES_TABLE}" in q]
    assert len(on_scores) == 1
    queries = [q for q in queries if q not in on_scores]
    assert len(queries) >= 4
    for query in queries:
        assert f"FROM {AGGREGATE}" in query
        used = set(re.findall(r"\b((?:avg|min|max)_[a-z_]+|sample_count|bucket|device_id)\b", query))
        assert used <= columns, used - columns
    score_columns = set(re.findall(r"^\s+([a-z_]+) [a-z]", CREATE_SCORES_TABLE.as_string(None), re.M))
    used = set(re.findall(r"\b(score_key|model|model_version|score|alarm|bucket|rows|connector)\b", on_scores[0]))
    assert used <= score_columns, used - score_columns


def exposed_sample_names() -> set[str]:
    """Every sample name /metrics shows once a connector has written a batch, failed a record and
    made an alert transition."""
    class Task:
        def __init__(self):
            self.stats = ConnectorStats("c", "t", assigned=(0,), stored_offsets={0: 5})
            self.stats.record_batch(messages=5, rows={"t": 5}, dead_letters=1, seconds=0.1, newest_ms=1,
                                    next_offsets={0: 5})
            self.stats.errors_by_stage[("map", "ValueError")] += 1
            self.stats.alerts_firing["overheat"] += 1
            self.stats.alert_transitions[("overheat", "firing")] += 1

    class Marks:
        updated_at = 1.0

        @staticmethod
        def high(topic, partition):
            from sinkframe.ops.kafka import Watermarks
            return Watermarks(0, 5)

    class Source:
        pipeline = type("P", (), {"tasks": [Task()], "pool": None})()
        watermarks = Marks()
        probe = None
        latency = BatchLatency()

    registry = new_registry()
    registry.register(PipelineCollector(Source()))
    names = set()
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        names |= {s.name for s in family.samples}
    # Families read from a live database pool and probe (covered by test_metrics.py).
    return names | {f"sinkframe_db_pool_{n}" for n in ("size", "max", "in_use", "waiting")} | {
        "sinkframe_database_up", "sinkframe_timescaledb_job_failures_total"}


def test_the_alert_examples_in_the_docs_are_valid_rules(promtool, tmp_path):
    text = (REPO / "docs" / "operations.md").read_text()
    block = re.search(r"Alerts worth having:\s*```yaml\n(.*?)```", text, re.S).group(1)
    rules = yaml.safe_load(block)
    assert {r["alert"] for r in rules} >= {"SinkframeDatabaseDown", "SinkframeLagGrowing"}
    path = tmp_path / "alerts.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "sinkframe", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    exposed = exposed_sample_names()
    for rule in rules:
        for name in re.findall(r"\b(sinkframe_[a-z_]+)\b", rule["expr"]):
            assert name in exposed, name
