"""`sinkframe status` against a real broker and database: lag drains to zero as the sink runs."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from sinkframe.cli import cli
from sinkframe.devservices import free_port
from sinkframe.ops.status import collect_status
from sinkframe.simulator import Fleet

from sinktest.config import sink_settings
from sinktest.db import count_rows
from sinktest.paths import CONFIGS
from sinktest.sinks import InProcessSink
from sinktest.traffic import send
from sinktest.waiting import wait_for

CONFIG = CONFIGS / "smart_breaker.yaml"


def status_json(*extra):
    result = CliRunner().invoke(cli, ["status", str(CONFIG), "-o", "json", *extra])
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout)


@pytest.mark.slow
def test_status_shows_lag_draining_to_zero(kafka_bootstrap, pg_dsn, topics, settings):
    fleet = Fleet(devices=10, seed=8, kinds=("smart_breaker",), sensor_share=0, malformed_rate=0.05)
    send(kafka_bootstrap, fleet, topics, 600)
    malformed = sum(n for (_, tag), n in fleet.counts.items() if tag == "malformed")

    before = status_json()["connectors"][0]
    assert before["topic"] == topics["smart_breaker"]
    assert before["lag"] == 600 and [p["db_stored"] for p in before["partitions"]] == [None] * 3
    assert before["schema"].startswith("drift")  # nothing created yet
    assert before["tables"][0]["note"] == "table does not exist"

    with InProcessSink([CONFIG], settings, metrics_port=free_port()):
        lags = [before["lag"]]

        def drained():
            lags.append(collect_status([CONFIG], settings).connectors[0].lag)
            return lags[-1] == 0

        wait_for(drained, timeout=60, interval=0.1, message="lag 0")
        # Kafka's committed offsets are a mirror, committed asynchronously after each batch.
        after = wait_for(lambda: (lambda c: c if all(p["kafka_committed"] == p["high"] for p in c["partitions"])
                                  else None)(status_json()["connectors"][0]), timeout=30, message="Kafka commits")

    assert lags == sorted(lags, reverse=True)  # it only ever went down
    for partition in after["partitions"]:
        assert partition["db_stored"] == partition["high"] == partition["kafka_committed"]
        assert partition["lag"] == 0
    rows = count_rows(settings.dsn, "smart_breaker_data")
    assert rows == 600 - malformed
    activity = {t["table"]: t for t in after["tables"]}
    assert activity["smart_breaker_data"]["last_minute"] == activity["smart_breaker_data"]["last_hour"] == rows
    assert activity["device_metadata"]["last_hour"] == 10
    assert after["dead_letters"] == malformed
    assert after["schema"] == "up to date"

    text = CliRunner().invoke(cli, ["status", str(CONFIG)])
    assert text.exit_code == 0, text.output
    assert "schema: up to date" in text.stdout and f"dead letters: {malformed}" in text.stdout
    assert f"smart_breaker_data {rows} / {rows}" in text.stdout


def test_status_reports_an_unreachable_database_without_its_password(monkeypatch, kafka_bootstrap, topics):
    port = free_port()
    sink_settings(monkeypatch, kafka_bootstrap, f"postgresql://sink:s3cret-pw@127.0.0.1:{port}/nowhere", topics)
    result = CliRunner().invoke(cli, ["status", str(CONFIG)])
    assert result.exit_code == 1
    assert "database unreachable" in result.stdout and "s3cret-pw" not in result.output
    assert "partition" in result.stdout  # the Kafka side is still shown
