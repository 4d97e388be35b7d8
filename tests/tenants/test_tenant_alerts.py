"""A routed connector's alerts: its tenants' states count, after a restart too, and the gauge never goes negative.

States of a connector with a `tenant:` block are stored under
`connector/tenant`. A sink restarted while a tenant's key is firing starts its
`sinkframe_alerts_firing` gauge at that count (not 0), `sinkframe alerts` lists
the state with its tenant, and the resolve that follows brings the gauge to 0,
not -1.
"""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from sinkframe.cli import cli
from sinkframe.devservices import produce

from sinktest.config import sink_env, write_connector
from sinktest.db import query
from sinktest.paths import REPO
from sinktest.sinks import InProcessSink
from sinktest.waiting import wait_for
from tenanthelp import run

pytestmark = pytest.mark.slow

RULES = "alerts:\n  - {name: hot, when: temperature > 70, clear: temperature < 65, severity: critical}\n"


def reading(tenant: str, device: str, second: int, temperature: float) -> dict:
    return {"tenant": tenant, "device_id": device, "timestamp": 1_700_000_000 + second,
            "measurements": {"temperature": temperature}}


def send(bootstrap: str, topic: str, readings: list[dict]) -> None:
    produce(bootstrap, topic, readings, key=lambda m: f"{m['tenant']}:{m['device_id']}".encode())


def test_a_tenants_firing_alert_counts_after_a_restart_and_its_resolve_brings_the_gauge_to_zero(
        kafka_bootstrap, pg_dsn, new_topic, tmp_path, tenant_names):
    (acme,) = tenant_names("acme")
    env = sink_env(kafka_bootstrap, pg_dsn, schema_dir=REPO / "schema")
    added = run("tenants", "add", acme, "--database-url", pg_dsn, env=env)
    assert added.exit_code == 0, added.output
    topic = new_topic(partitions=1)
    connector = write_connector(tmp_path, name="routed-alerts", topic=topic, plugin="smart_breaker",
                                max_wait_ms=50, extra='tenant: {key_prefix: ":"}\n' + RULES)

    send(kafka_bootstrap, topic, [reading(acme, "dev-1", 0, 80.0), reading(acme, "dev-2", 0, 90.0)])
    with InProcessSink([connector], env) as sink:
        wait_for(lambda: sink.tasks[0].stats.messages >= 2, timeout=60, message="both hot readings")
        assert sink.tasks[0].stats.alerts_firing["hot"] == 2
    assert query(pg_dsn, "SELECT connector, alert_key, state FROM sinkframe_alert_states ORDER BY 2") == [
        (f"routed-alerts/{acme}", "dev-1", "firing"), (f"routed-alerts/{acme}", "dev-2", "firing")]

    listed = CliRunner().invoke(cli, ["alerts", "--firing", "-o", "json", "--database-url", pg_dsn, str(connector)])
    assert listed.exit_code == 0, listed.output
    found = json.loads(listed.output)["connectors"][0]
    assert [(s["tenant"], s["alert_key"], s["state"]) for s in found["states"]] == [
        (acme, "dev-1", "firing"), (acme, "dev-2", "firing")]
    assert {t["tenant"] for t in found["transitions"]} == {acme}
    text = CliRunner().invoke(cli, ["alerts", "--database-url", pg_dsn, str(connector)])
    assert "2 firing" in text.output and "tenant" in text.output and acme in text.output

    with InProcessSink([connector], env) as sink:
        task = sink.tasks[0]
        assert task.stats.alerts_firing["hot"] == 2  # from the stored states, the tenant's included
        send(kafka_bootstrap, topic, [reading(acme, "dev-1", 10, 60.0), reading(acme, "dev-2", 10, 60.0)])
        wait_for(lambda: task.stats.messages >= 2, timeout=60, message="both cool readings")
        assert task.stats.alerts_firing["hot"] == 0
    assert query(pg_dsn, "SELECT state, count(*) FROM sinkframe_alerts GROUP BY 1 ORDER BY 1") == [
        ("firing", 2), ("resolved", 2)]
