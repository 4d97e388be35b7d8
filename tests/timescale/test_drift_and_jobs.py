"""`schema plan`, `sinkframe status` and the job-failure metric reading a real server's
timescaledb_information views: drift made by hand, and a job the scheduler ran and saw fail."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from sinkframe.cli import cli
from sinkframe.ops.health import DatabaseProbe
from sinkframe.ops.metrics import BatchLatency, PipelineCollector
from sinkframe.schema import apply_schema, load_schema

from sinktest.paths import CONFIGS, REPO
from sinktest.waiting import wait_for

pytestmark = [pytest.mark.timescale, pytest.mark.slow]

FAILING_JOB = """
CREATE PROCEDURE always_fails(job_id int, config jsonb) LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'failing on purpose'; END $$
"""


def test_plan_and_status_show_drift_made_by_hand(real_timescale, monkeypatch):
    with real_timescale.connect() as conn:
        apply_schema(conn, load_schema(REPO / "schema", env={}))
        conn.execute("ALTER TABLE smart_breaker_data SET (timescaledb.compress_segmentby = '', "
                     "timescaledb.compress_orderby = 'time ASC')")
        conn.execute("SELECT remove_retention_policy('smart_breaker_data')")
    env = {"SINKFRAME_DATABASE_URL": real_timescale.dsn, "SINKFRAME_SCHEMA_DIR": str(REPO / "schema"),
           "SINKFRAME_PLAIN_POSTGRES": None}
    plan = CliRunner().invoke(cli, ["schema", "plan", "--detailed-exitcode"], env=env)
    assert plan.exit_code == 2, plan.output
    drift = [line for line in plan.stderr.splitlines() if line.startswith("drift: smart_breaker_data")]
    assert [line.split(";")[0] for line in drift] == [
        "drift: smart_breaker_data: compression segments by (nothing) ordered by (time), "
        "spec says (device_id) ordered by (time DESC)",
        "drift: smart_breaker_data: has no retention policy"], plan.stderr
    assert "SELECT add_retention_policy('\"smart_breaker_data\"'::regclass" in plan.stdout

    for key, value in {**env, "SMART_BREAKER_TOPIC": "tsdb.status.unused",
                       "REDPANDA_BROKERS": "127.0.0.1:1"}.items():
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value)
    status = CliRunner().invoke(cli, ["status", str(CONFIGS / "smart_breaker.yaml"), "-o", "json"])
    connector = json.loads(status.stdout)["connectors"][0]
    assert connector["schema"].startswith("drift:"), connector
    assert any("retention" in line for line in connector["schema_details"]), connector


def test_the_job_failure_metric_counts_what_the_scheduler_saw_fail(real_timescale):
    with real_timescale.connect() as conn:
        conn.execute(FAILING_JOB)
        ok_job = conn.execute("SELECT add_job('always_fails', '1 hour', scheduled => false)").fetchone()[0]
        failing = conn.execute("SELECT add_job('always_fails', '2 seconds', initial_start => now())").fetchone()[0]

    def failures() -> int:
        with real_timescale.connect() as conn:
            row = conn.execute("SELECT total_failures FROM timescaledb_information.job_stats WHERE job_id = %s",
                               [failing]).fetchone()
        return row[0] if row and row[0] else 0

    wait_for(lambda: failures() >= 1, timeout=120, interval=0.5, message="the scheduler to run the failing job")
    # The prober reads the job views on its own thread; the metric serves what it read last.
    probe = DatabaseProbe(real_timescale.dsn, interval=0.2, jobs_interval=0.5).start()
    try:
        wait_for(lambda: any(job.job_id == failing for job in probe.job_failures()), timeout=30,
                 message="the probe to read the failing job")
        seen = {job.job_id: job for job in probe.job_failures()}
        collector = PipelineCollector(SimpleNamespace(latency=BatchLatency(), pipeline=None, watermarks=None,
                                                      probe=probe))
        samples = {s.labels["job_id"]: s.value for family in collector.collect()
                   if family.name == "sinkframe_timescaledb_job_failures" for s in family.samples
                   if s.name.endswith("_total")}
    finally:
        probe.close()
    assert seen[failing].proc_name == "always_fails" and seen[failing].failures >= 1
    assert ok_job not in seen or seen[ok_job].failures == 0  # never ran
    assert samples[str(failing)] >= 1
    # Only this database's jobs: the server's other databases have jobs of their own.
    with real_timescale.connect() as conn:
        mine = {j for (j,) in conn.execute("SELECT job_id FROM timescaledb_information.jobs")}
    assert set(seen) <= mine and {int(j) for j in samples} <= mine
