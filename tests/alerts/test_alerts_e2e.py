"""Alerts end to end: broker -> sink -> PostgreSQL, transitions recorded exactly once.

Each transition is a row of sinkframe_alerts written in the batch's own
transaction, so a crossing gives exactly one 'firing' row and, after `clear`,
exactly one 'resolved' row, through kill -9 restarts too.
"""
from __future__ import annotations

import json
import random
import re
import signal
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from sinkframe.cli import cli
from sinkframe.devservices import free_port, produce

from sinktest.config import FAST_GROUP_JOIN, sink_env, write_connector
from sinktest.db import create_tables, query
from sinktest.paths import REPO
from sinktest.sinks import InProcessSink, run_process_until, start_sink_process
from sinktest.waiting import wait_for

RULES = """\
alerts:
  - name: overheat
    when: temperature > 70
    clear: temperature < 65
    severity: critical
  - name: overheat_sustained
    when: temperature > 70
    for: 30s
"""
BASE = 1_700_000_000


def reading(device: str, second: int, temperature: float | None) -> dict:
    return {"device_id": device, "timestamp": BASE + second, "measurements": {"temperature": temperature}}


def transitions(dsn: str, alert: str | None = None) -> list[tuple]:
    rows = query(dsn, "SELECT alert, alert_key, state, value, source_offset FROM sinkframe_alerts ORDER BY id")
    return [r for r in rows if alert is None or r[0] == alert]


def test_a_crossing_fires_once_and_resolves_once_and_for_suppresses_a_short_excursion(
        kafka_bootstrap, pg_dsn, new_topic, tmp_path):
    create_tables(pg_dsn)
    topic = new_topic(partitions=1)
    connector = write_connector(tmp_path, name="alerting", topic=topic, plugin="smart_breaker",
                                max_wait_ms=50, extra=RULES)
    # dev-1: 60 -> 75 (fires) -> 72 (still above clear: hysteresis keeps it firing) -> 66 -> 64 (resolves),
    # a null in between changes nothing; its excursion lasts 10 s, too short for the 30 s rule.
    # dev-2: above 70 for 40 s of message time: both rules fire. dev-3 overheats and stays hot.
    temperatures = {"dev-1": [(0, 60), (10, 75), (12, None), (15, 72), (18, 66), (20, 64), (25, 60)],
                    "dev-2": [(0, 71), (20, 80), (40, 79), (45, 50)],
                    "dev-3": [(0, 90)]}
    produce(kafka_bootstrap, topic, [reading(d, s, t) for d, seq in temperatures.items() for s, t in seq],
            key=lambda m: m["device_id"].encode())

    with InProcessSink([connector], sink_env(kafka_bootstrap, pg_dsn), metrics_port=free_port()) as sink:
        wait_for(lambda: sink.tasks[0].stats.messages >= 12, timeout=30, message="all 12 messages")
        metrics = urllib.request.urlopen(f"{sink.url}/metrics", timeout=10).read().decode()

    # The metrics, the `alerts` command and the table say the same: dev-3 is overheating, nothing else fires.
    assert 'sinkframe_alerts_firing{alert="overheat",connector="alerting"} 1.0' in metrics
    assert 'sinkframe_alerts_firing{alert="overheat_sustained",connector="alerting"} 0.0' in metrics
    listed = CliRunner().invoke(cli, ["alerts", "--firing", "-o", "json", "--database-url", pg_dsn, str(connector)])
    assert listed.exit_code == 0, listed.output
    states = json.loads(listed.output)["connectors"][0]["states"]
    assert [(s["alert"], s["alert_key"], s["state"]) for s in states] == [("overheat", "dev-3", "firing")]
    assert query(pg_dsn, "SELECT alert, alert_key FROM sinkframe_alert_states WHERE state = 'firing'") == \
        [("overheat", "dev-3")]

    assert [(a, k, s, v) for a, k, s, v, _ in transitions(pg_dsn, "overheat")] == [
        ("overheat", "dev-1", "firing", "75.0"), ("overheat", "dev-1", "resolved", "64.0"),
        ("overheat", "dev-2", "firing", "71.0"), ("overheat", "dev-2", "resolved", "50.0"),
        ("overheat", "dev-3", "firing", "90.0")]
    assert [(k, s) for _, k, s, _, _ in transitions(pg_dsn, "overheat_sustained")] == [
        ("dev-2", "firing"), ("dev-2", "resolved")]  # dev-1's 10 s and dev-3's single reading are too short


def crossing_stream(devices: int, crossings: int) -> list[dict]:
    """Every device alternates two hot and two cool readings: one transition every second reading."""
    out = []
    for step in range(crossings * 2):
        hot = (step // 2) % 2 == 0
        for d in range(devices):
            out.append(reading(f"breaker-{d:03d}", step, 80.0 if hot else 60.0))
    return out


@pytest.mark.slow
def test_200_devices_x_50_crossings_give_exactly_10000_transitions_through_two_kill9(
        kafka_bootstrap, pg_dsn, new_topic, tmp_path):
    rng = random.Random(11)
    create_tables(pg_dsn)
    topic = new_topic(partitions=3)
    rules = "alerts:\n  - {name: overheat, when: temperature > 70, clear: temperature < 65}\n"
    connector = write_connector(tmp_path, name="crossings", topic=topic, plugin="smart_breaker",
                                max_rows=500, max_wait_ms=50, extra=rules)
    env = sink_env(kafka_bootstrap, pg_dsn, group_join=FAST_GROUP_JOIN)
    stream = crossing_stream(200, 50)
    log = tmp_path / "sink.log"

    def send():
        for first in range(0, len(stream), 1_000):  # about 16 s of traffic, so that kills land mid-stream
            produce(kafka_bootstrap, topic, stream[first:first + 1_000], key=lambda m: m["device_id"].encode())
            time.sleep(0.8)

    producer = threading.Thread(target=send, daemon=True)
    producer.start()
    at_kills = []
    for kill in range(2):
        assignments = log.read_text().count(": assigned ") if log.exists() else 0
        sink = start_sink_process([connector], env, log)
        wait_for(lambda: log.read_text().count(": assigned ") > assignments, timeout=60,
                 message=f"run {kill + 1} to get partitions")
        time.sleep(rng.uniform(1.0, 3.0))
        sink.send_signal(signal.SIGKILL)
        sink.wait(10)
        at_kills.append(query(pg_dsn, "SELECT count(*) FROM sinkframe_alerts")[0][0])
    producer.join(60)
    run_process_until([connector], env, log,
                      lambda: query(pg_dsn, "SELECT count(*) FROM smart_breaker_data")[0][0] >= len(stream),
                      timeout=90, message="every reading written")
    assert any(0 < n < 10_000 for n in at_kills), f"no kill landed mid-stream: {at_kills}"
    per_device = query(pg_dsn, "SELECT alert_key, count(*) FILTER (WHERE state = 'firing'), "
                               "count(*) FILTER (WHERE state = 'resolved') FROM sinkframe_alerts GROUP BY 1")
    assert len(per_device) == 200 and {(f, r) for _, f, r in per_device} == {(25, 25)}
    assert query(pg_dsn, "SELECT count(*), count(DISTINCT (source_partition, source_offset)) "
                         "FROM sinkframe_alerts") == [(10_000, 10_000)]
    assert query(pg_dsn, "SELECT count(*) FROM smart_breaker_data") == [(len(stream),)]


def test_the_shipped_example_rules_validate_when_uncommented(tmp_path):
    # The commented-out rules in configs/smart_breaker.yaml are documentation a user will
    # uncomment: they must be valid as written.
    text = (REPO / "configs" / "smart_breaker.yaml").read_text()
    assert "# alerts:" in text
    uncommented = re.sub(r"^# (alerts:|alerts_topic:|  - |    )", r"\1", text, flags=re.MULTILINE)
    path = Path(tmp_path) / "smart_breaker.yaml"
    path.write_text(uncommented)
    result = CliRunner().invoke(cli, ["validate", "--schema-dir", str(REPO / "schema"), str(path)])
    assert result.exit_code == 0, result.output
    assert "ok  smart-breaker" in result.output


def test_transitions_also_go_to_the_alerts_topic_as_json_keyed_by_alert_and_key(
        kafka_bootstrap, pg_dsn, new_topic, tmp_path):
    from confluent_kafka import Consumer

    create_tables(pg_dsn)
    topic, alerts_topic = new_topic(partitions=1), new_topic(partitions=1)
    rules = f"alerts_topic: {alerts_topic}\nalerts:\n  - {{name: hot, when: temperature > 70, severity: critical}}\n"
    connector = write_connector(tmp_path, name="alerting-topic", topic=topic, plugin="smart_breaker",
                                max_wait_ms=50, extra=rules)
    produce(kafka_bootstrap, topic, [reading("dev-9", 0, 80), reading("dev-9", 5, 60)],
            key=lambda m: m["device_id"].encode())
    with InProcessSink([connector], sink_env(kafka_bootstrap, pg_dsn)) as sink:
        wait_for(lambda: sink.tasks[0].stats.messages >= 2, timeout=30, message="both messages")

    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"check-{alerts_topic}",
                         "auto.offset.reset": "earliest", "session.timeout.ms": 6000})
    consumer.subscribe([alerts_topic])
    received = []
    deadline = time.monotonic() + 30
    while len(received) < 2 and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            received.append((message.key(), json.loads(message.value())))
    consumer.close()
    assert [(k, v["state"], v["value"], v["severity"]) for k, v in received] == [
        (b"hot:dev-9", "firing", "80.0", "critical"), (b"hot:dev-9", "resolved", "60.0", "critical")]
    assert received[0][1]["source"] == {"topic": topic, "partition": 0, "offset": 0}
    assert len(transitions(pg_dsn)) == 2  # the table has them too, exactly once
