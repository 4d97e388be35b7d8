"""`sinkframe bench` on a tiny N: every section runs and counts right. Not a timed test."""
from __future__ import annotations

import json
import math
import uuid
from datetime import timedelta

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql

from sinkframe.bench import profile
from sinkframe.bench.ceiling import INDEX_FREE_ROWS_PER_TRANSACTION
from sinkframe.bench.database import BenchTables
from sinkframe.bench.latency import latencies, percentiles
from sinkframe.bench.quix import FIRST_MESSAGE, QuixProcess, quix_python
from sinkframe.bench.report import scoring_rows
from sinkframe.bench.scoring import SETTLE_SECONDS, ScoringWorkload
from sinkframe.bench.suite import SECTIONS, TARGETS, check_targets, default_config, default_schema_dir
from sinkframe.cli import cli
from sinkframe.models import detector
from sinkframe.schema import load_schema
from sinkframe.schema.spec import canonical_type


@pytest.mark.slow
def test_quick_bench_counts_every_message_and_writes_every_section(tmp_path, postgres_admin_dsn, timescale_server,
                                                                   monkeypatch):
    monkeypatch.setenv("SINKFRAME_BENCH_POSTGRES_DSN", postgres_admin_dsn)
    monkeypatch.delenv("SINKFRAME_BENCH_BROKERS", raising=False)
    if timescale_server is not None:  # the server the TimescaleDB tests run on
        monkeypatch.setenv("SINKFRAME_BENCH_TIMESCALE_DSN", timescale_server.dsn)
    database = f"sinkframe_bench_test_{uuid.uuid4().hex[:8]}"
    output = tmp_path / "results.json"
    try:
        result = CliRunner().invoke(cli, ["bench", "--quick", "--output", str(output), "--database-name", database])
    finally:
        for admin_dsn in (postgres_admin_dsn, *([timescale_server.dsn] if timescale_server else [])):
            with psycopg.connect(admin_dsn, autocommit=True) as admin:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
    assert result.exit_code == 0, result.output
    assert "targets:" in result.output

    assert "secondary: index-free table" in result.output and "NOT what users run" in result.output

    results = json.loads(output.read_text())
    assert set(SECTIONS) <= set(results)
    options = results["options"]
    assert options["quick"] is True
    messages = options["messages"]
    tables = BenchTables.from_connector(default_config())

    # The tables are the schema module's, indexes included; the ceiling writes the sink's batch size.
    declared = load_schema(default_schema_dir()).tables[tables.data].indexes
    made = results["tables"][tables.data]["indexes"]
    assert declared and all(any(index.name in definition for definition in made) for index in declared)
    ceiling = results["ceiling"]
    assert ceiling["table"] == tables.data and ceiling["indexes"] == made
    assert ceiling["rows_counted"] == messages
    assert ceiling["rows_per_transaction"] == tables.batch_rows == results["tables"]["batch_max_rows"]
    index_free = results["ceiling_index_free"]
    assert index_free["indexes"] == [] and index_free["table"] != tables.data
    assert index_free["rows_counted"] == messages
    assert index_free["rows_per_transaction"] == INDEX_FREE_ROWS_PER_TRANSACTION

    e2e = results["end_to_end"]
    assert e2e["rows_counted"] == e2e["rows_with_distinct_source"] == e2e["messages"] == messages
    assert e2e["fast_path_fallbacks"] == {}  # the benchmark's messages all take the mapper's fast path
    assert e2e["dead_letters"] == 0 and e2e["exit_codes"] == [0]
    assert e2e["device_metadata_rows"] > 0
    assert e2e["peak_rss_mb"] > 0

    quix = results["quix"]
    if quix_python()[0] is None:
        assert "quixstreams" in quix["skipped"]
        assert "not measured" in result.output
    else:
        assert quix["rows_counted"] == quix["rows_with_distinct_source"] == quix["messages"] == messages
        assert quix["exit_code"] == 0 and quix["msgs_per_second"] > 0 and quix["writes"] >= options["partitions"]
        assert quix["versions"]["quixstreams"]

    assert results["naive"]["rows_counted"] == options["baseline_messages"]
    latency = results["latency"]
    assert latency["rows_counted"] == latency["messages"] > 0
    assert latency["never_seen_committed"] == 0
    assert {"p50_ms", "p99_ms"} <= set(latency["visible"])
    assert results["workers"]["2"]["rows_counted"] == messages
    assert_scoring_section(results["scoring"], messages)
    assert "scoring on (contact_health)" in result.output and "as the detector's warm-up predicts" in result.output
    checks = {t["target"]: t for t in results["targets"]}
    assert set(checks) == {t.name for t in TARGETS}
    assert checks["ratio_to_ceiling"]["measured"] == round(e2e["msgs_per_second"] / ceiling["rows_per_second"], 3)
    assert checks["peak_rss_mb"]["met"] is True
    assert results["machine"]["cpu_count"] >= 1

    tsdb = results["timescaledb"]
    if timescale_server is None:
        assert "no TimescaleDB server" in tsdb["skipped"] and "TimescaleDB (hypertables): skipped" in result.output
        return
    # The same sections on hypertables made by the schema module; the ceiling COPYs into the hypertable.
    assert tsdb["tables"][tables.data]["hypertable"] is True and tsdb["ceiling"]["hypertable"] is True
    assert tsdb["ceiling"]["rows_counted"] == messages
    assert tsdb["end_to_end"]["rows_counted"] == tsdb["end_to_end"]["rows_with_distinct_source"] == messages
    assert tsdb["workers"]["2"]["rows_counted"] == messages
    assert tsdb["naive"]["rows_counted"] == options["baseline_messages"]
    assert tsdb["latency"]["never_seen_committed"] == 0
    assert_scoring_section(tsdb["scoring"], messages)
    assert {t["target"] for t in tsdb["targets"]} == {t.name for t in TARGETS}
    assert "TimescaleDB (hypertables): TimescaleDB" in result.output


def assert_scoring_section(scoring: dict, messages: int) -> None:
    """Both drains wrote every message once; every key was fitted; the rows scored are exactly those
    the detector scores (all but each key's warm-up), counted in sinkframe_scores."""
    workload = ScoringWorkload.for_messages(messages)
    assert scoring["messages_requested"] == messages and scoring["messages"] == workload.messages
    assert scoring["row_interval_seconds"] == workload.interval_seconds
    for run in (scoring["scoring_off"], scoring["scoring_on"]):
        assert run["rows_counted"] == run["rows_with_distinct_source"] == run["messages"] == workload.messages
        assert run["dead_letters"] == 0 and run["exit_codes"] == [0]
    fit = scoring["fit"]
    assert fit["rows"] == workload.messages and fit["keys"] == fit["keys_fitted"] == scoring["devices"]
    assert scoring["rows_written"] == workload.messages
    assert 0 < scoring["rows_scored"] == scoring["rows_scored_expected"] < scoring["rows_written"]
    assert scoring["rows_not_scored"] == scoring["rows_written"] - scoring["rows_scored"]
    assert scoring["scored_as_expected"] is True
    # A device's rows are over a minute apart: one sinkframe_scores row (key, minute) per row scored.
    assert scoring["score_rows"] == scoring["rows_scored"]
    assert scoring["ratio_to_scoring_off"] == round(scoring["scoring_on"]["msgs_per_second"]
                                                    / scoring["scoring_off"]["msgs_per_second"], 3)


@pytest.mark.parametrize("requested", [3_000, 60_000, 100_000, 1_000_000, 1_234_567])
def test_the_scoring_workload_lets_every_device_be_fitted(requested):
    workload = ScoringWorkload.for_messages(requested)
    assert workload.messages == max(requested, 60_000)
    rows_per_device = workload.messages // 1_000
    warming = math.ceil(SETTLE_SECONDS / workload.interval_seconds)  # rows a fit leaves out of each key
    assert rows_per_device - warming >= detector.MIN_ROWS
    # No row lies exactly two time constants after its key's first (float rounding would decide it).
    assert all((2 * tau) % workload.interval_seconds for tau in detector.TAU_CHOICES)
    assert workload.step * 1_000 == timedelta(seconds=workload.interval_seconds)
    if requested == 1_000_000:
        assert workload.interval_seconds == 70  # the full run's rows fit in one day (one TimescaleDB chunk)


def test_the_report_says_why_scoring_was_skipped():
    rows = []
    scoring_rows({"skipped": "--no-scoring"}, lambda *cells: rows.append(cells))
    assert rows == [("scoring on (contact_health)", "skipped", "--no-scoring")]


def test_the_benchmark_writes_the_columns_the_schema_declares():
    tables = BenchTables.from_connector(default_config())
    spec = load_schema(default_schema_dir())
    for target in (tables.measurements, tables.device_metadata):
        declared = {c.name: c.type for c in spec.tables[target.table].columns}
        assert {c.name: canonical_type(c.pg_type) for c in target.target.columns}.items() <= declared.items()


def test_a_target_not_measured_is_neither_met_nor_missed():
    results = {"ceiling": {"rows_per_second": 100_000}, "end_to_end": {"msgs_per_second": 80_000, "peak_rss_mb": 120},
               "workers": {"skipped": "--no-workers-compare"}, "quix": {"skipped": "not installed"},
               "latency": {"visible": {"p99_ms": 600.0}, "offered_rate": 20_000, "achieved_rate": 19_800}}
    checks = {t["target"]: (t["measured"], t["met"]) for t in check_targets(results)}
    assert checks == {"ratio_to_ceiling": (0.8, True), "workers_2_ratio_to_ceiling": (None, None),
                      "times_quix": (None, None), "latency_p99_ms": (600.0, False), "peak_rss_mb": (120, True)}
    assert not any("note" in t for t in check_targets(results))

    # On hypertables the one-process goal is 0.70, so 0.72 meets it there and misses it on plain tables.
    results["end_to_end"]["msgs_per_second"] = 72_000
    for hypertables, met in ((False, False), (True, True)):
        check = next(t for t in check_targets(results, hypertables=hypertables) if t["target"] == "ratio_to_ceiling")
        assert (check["measured"], check["met"], check["goal"]) == (0.72, met, ">= 0.7" if hypertables else ">= 0.75")

    results["latency"]["achieved_rate"] = 6_000  # the producer fell behind: say so beside the figure
    latency = next(t for t in check_targets(results) if t["target"] == "latency_p99_ms")
    assert "6,000 of 20,000" in latency["note"]


def test_quix_rows_are_counted_from_the_sinks_write_log_lines(tmp_path):
    app = QuixProcess("python", [], log_path=tmp_path / "quix.log")
    line = "[2026-12-01 19:22:02,446] [INFO] [quixstreams] : Successfully wrote records to tables; " \
           "table row counts: {'smart_breaker_data': %d}\n"
    app.on_line(1.0, "[2026-12-01 19:21:56,330] [INFO] [quixstreams] : The application started\n")
    app.on_line(2.0, f"[2026-12-01 19:21:57,001] [INFO] [quixstreams.bench] : {FIRST_MESSAGE}\n")
    app.on_line(7.0, line % 5000)
    app.on_line(7.5, line % 1234)
    assert app.first_message_at == 2.0
    assert app.writes == [(7.0, 5000), (7.5, 6234)] and app.written() == (7.5, 6234)
    assert app.errors == []


def test_latency_is_measured_to_the_first_poll_that_saw_the_row_committed():
    seen = {0: [(10.0, 2), (10.5, 5)], 1: [(11.0, 1)]}
    rows = [(0, 0, 9.9, 9.95), (0, 1, 9.8, 9.95), (0, 4, 10.2, 10.4), (1, 0, 10.0, 10.9), (1, 1, 10.9, 11.1)]
    visible, txn_start, missing = latencies(rows, seen)
    assert [round(v, 3) for v in visible] == [0.1, 0.2, 0.3, 1.0]
    assert missing == 1  # partition 1, offset 1: no poll saw it
    assert [round(v, 3) for v in txn_start] == [0.05, 0.15, 0.2, 0.9, 0.2]
    assert percentiles([0.1, 0.2])["max_ms"] == 200.0


def test_profile_stages_follow_the_innermost_known_frame_per_thread(tmp_path):
    run = "Thread.run (threading.py:982);ConnectorTask.run (sinkframe/pipeline/task.py:110)"
    poll = f"{run};ConnectorTask._poll (sinkframe/pipeline/task.py:135)"
    add = f"{poll};ConnectorTask._add (sinkframe/pipeline/task.py:180);BatchBuilder.add (sinkframe/pipeline/batch.py:120)"
    writer = "Thread.run (threading.py:982);WriteStage._run (sinkframe/pipeline/write/writestage.py:120)"
    write = f"{writer};WriteStage._write (sinkframe/pipeline/write/writestage.py:140);BatchWriter.write (sinkframe/pipeline/write/writer.py:200)"
    raw = tmp_path / "profile.txt"
    raw.write_text("\n".join([
        f"{poll} 50",
        f"{add};map_each (sinkframe/mapping/batch.py:190);decode_json_object (sinkframe/mapping/decode.py:15) 30",
        f"{add};SmartBreakerMapper.map_batch (plugins/smart_breaker.py:132) 20",
        f"{write};BatchWriter._write_role (sinkframe/pipeline/write/writer.py:280);Copy.write_row (psycopg/copy.py:90) 60",
        f"{writer};Condition.wait_for (threading.py:360) 40",
        "Thread.run (threading.py:982);Pipeline.wait (sinkframe/pipeline/runner.py:117);Event.wait (threading.py:629) 99",
    ]) + "\n")
    summary = profile.summarize(raw)
    assert summary["connector"]["samples"] == 100 and summary["writer"]["samples"] == 100  # the runner's left out
    assert summary["connector"]["stages_percent"] == {"consume() (librdkafka, fetch + message objects)": 50.0,
                                                      "decode (orjson / msgspec)": 30.0, "map (mapper plugin)": 20.0}
    assert summary["writer"]["stages_percent"] == {"COPY write_row (encode + send rows)": 60.0,
                                                   "waiting for the next batch": 40.0}