"""`sinkframe bench` on a tiny N: every section runs and counts right. Not a timed test."""
from __future__ import annotations

import json
import uuid

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql

from sinkframe.bench import profile
from sinkframe.bench.latency import latencies, percentiles
from sinkframe.bench.suite import SECTIONS
from sinkframe.cli import cli


@pytest.mark.slow
def test_quick_bench_counts_every_message_and_writes_every_section(tmp_path, postgres_admin_dsn, monkeypatch):
    monkeypatch.setenv("SINKFRAME_BENCH_POSTGRES_DSN", postgres_admin_dsn)
    monkeypatch.delenv("SINKFRAME_BENCH_BROKERS", raising=False)
    database = f"sinkframe_bench_test_{uuid.uuid4().hex[:8]}"
    output = tmp_path / "results.json"
    try:
        result = CliRunner().invoke(cli, ["bench", "--quick", "--output", str(output), "--database-name", database])
    finally:
        with psycopg.connect(postgres_admin_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
    assert result.exit_code == 0, result.output
    assert "targets:" in result.output

    results = json.loads(output.read_text())
    assert set(SECTIONS) <= set(results)
    options = results["options"]
    assert options["quick"] is True
    messages = options["messages"]

    assert results["ceiling"]["rows_counted"] == messages
    e2e = results["end_to_end"]
    assert e2e["rows_counted"] == e2e["rows_with_distinct_source"] == e2e["messages"] == messages
    assert e2e["dead_letters"] == 0 and e2e["exit_codes"] == [0]
    assert e2e["device_metadata_rows"] > 0
    assert e2e["peak_rss_mb"] > 0
    assert results["naive"]["rows_counted"] == options["baseline_messages"]
    latency = results["latency"]
    assert latency["rows_counted"] == latency["messages"] > 0
    assert latency["never_seen_committed"] == 0
    assert {"p50_ms", "p99_ms"} <= set(latency["visible"])
    assert results["workers"]["2"]["rows_counted"] == messages
    assert {t["target"] for t in results["targets"]} == {"ratio_to_ceiling", "times_naive", "latency_p99_ms",
                                                         "peak_rss_mb"}
    assert results["machine"]["cpu_count"] >= 1


def test_latency_is_measured_to_the_first_poll_that_saw_the_row_committed():
    seen = {0: [(10.0, 2), (10.5, 5)], 1: [(11.0, 1)]}
    rows = [(0, 0, 9.9, 9.95), (0, 1, 9.8, 9.95), (0, 4, 10.2, 10.4), (1, 0, 10.0, 10.9), (1, 1, 10.9, 11.1)]
    visible, txn_start, missing = latencies(rows, seen)
    assert [round(v, 3) for v in visible] == [0.1, 0.2, 0.3, 1.0]
    assert missing == 1  # partition 1, offset 1: no poll saw it
    assert [round(v, 3) for v in txn_start] == [0.05, 0.15, 0.2, 0.9, 0.2]
    assert percentiles([0.1, 0.2])["max_ms"] == 200.0


def test_profile_stages_follow_the_innermost_known_frame(tmp_path):
    run = "Thread.run (threading.py:982);ConnectorTask.run (sinkframe/pipeline/task.py:110)"
    poll = f"{run};ConnectorTask._poll (sinkframe/pipeline/task.py:135)"
    raw = tmp_path / "profile.txt"
    raw.write_text("\n".join([
        f"{poll} 50",
        f"{poll};ConnectorTask._add (sinkframe/pipeline/task.py:158);decode_json_object (sinkframe/pipeline/decode.py:15) 30",
        f"{poll};ConnectorTask._add (sinkframe/pipeline/task.py:160);SmartBreakerMapper.map (plugins/smart_breaker.py:132) 20",
        "Thread.run (threading.py:982);Pipeline.wait (sinkframe/pipeline/runner.py:117);Event.wait (threading.py:629) 99",
    ]) + "\n")
    summary = profile.summarize(raw)
    assert summary["samples"] == 100  # the connector thread only
    assert summary["stages_percent"] == {"consume() (librdkafka, fetch + message objects)": 50.0,
                                         "decode (orjson)": 30.0, "map (mapper plugin)": 20.0}
