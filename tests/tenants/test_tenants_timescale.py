"""Tenants on TimescaleDB: hypertables, continuous aggregates and policies per tenant.

On a real server each test has a database of its own; on the embedded engine (the
fallback) a module shares one, which takes ONE connection at a time: every
command and every check opens its own and closes it (`timescale.connect()`). The
retention policy is run by hand (`CALL run_job`) with the scheduler's hands off the
jobs (`hold_jobs`); tests/timescale/ lets the real server's scheduler run a
tenant's policies by itself.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from psycopg import errors, sql

from sinkframe.schema import load_schema

from sinktest.paths import REPO
from sinktest.tsdb import insert_raw, job_id, run_by_scheduler
from tenanthelp import drop_roles, run, unique

pytestmark = [pytest.mark.timescale, pytest.mark.slow]

SPEC = load_schema(REPO / "schema", env={})
HYPERTABLES = sorted(n for n, t in SPEC.tables.items() if t.hypertable)
CAGGS = sorted(SPEC.continuous_aggregates)
ENV = {"SINKFRAME_PLAIN_POSTGRES": None, "SINKFRAME_SCHEMA_DIR": str(REPO / "schema")}


def sinkframe(dsn: str, *args: str):
    return run(*args, "--database-url", dsn, env=ENV, pause=0.05)


@pytest.fixture
def tenants(timescale_dsn, timescale):
    """public's schema, then acme (7 days) and globex (90 days), through the CLI; roles and schemas
    dropped afterwards (the engine's database serves the next test)."""
    acme, globex = unique("acme"), unique("globex")
    results = {"public": sinkframe(timescale_dsn, "schema", "apply")}
    results["plan"] = sinkframe(timescale_dsn, "tenants", "plan", acme, "--retention", "7 days")
    results[acme] = sinkframe(timescale_dsn, "tenants", "add", acme, "--retention", "7 days")
    results[globex] = sinkframe(timescale_dsn, "tenants", "add", globex, "--retention", "90 days")
    yield acme, globex, results
    for name in (acme, globex):  # unregistered too: the engine's database serves the next test
        sinkframe(timescale_dsn, "tenants", "remove", name, "--yes", "--drop-data")
    drop_roles(timescale_dsn, [acme, globex], connect=timescale.connect)


def retention_policies(conn) -> dict[tuple[str, str], str]:
    return {(schema, table): config["drop_after"] for schema, table, config in conn.execute(
        "SELECT hypertable_schema, hypertable_name, config FROM timescaledb_information.jobs "
        "WHERE proc_name = 'policy_retention' AND hypertable_name IS NOT NULL", prepare=False)}


def test_the_plan_of_a_new_tenant_targets_its_schema_and_creates_nothing(tenants):
    acme, _globex, results = tenants
    plan = results["plan"]
    assert plan.exit_code == 0, plan.output
    assert f'SET search_path TO "tenant_{acme}", "public";' in plan.stdout
    assert "SELECT create_hypertable('\"iot_raw_data\"'::regclass" in plan.stdout
    assert "SELECT add_retention_policy('\"iot_raw_data\"'::regclass, drop_after => '7 days'::interval" in plan.stdout
    assert 'CREATE MATERIALIZED VIEW "iot_raw_hourly_counts" WITH (timescaledb.continuous' in plan.stdout
    assert "CREATE EXTENSION" not in plan.stdout  # installed already, in public


def test_each_tenant_gets_hypertables_caggs_and_its_own_retention(tenants, timescale_dsn, timescale):
    acme, globex, results = tenants
    for key in ("public", acme, globex):
        assert results[key].exit_code == 0, results[key].output
    with timescale.connect() as conn:
        hypertables = conn.execute("SELECT hypertable_schema, hypertable_name FROM timescaledb_information.hypertables",
                                   prepare=False).fetchall()
        caggs = conn.execute("SELECT view_schema, view_name, hypertable_schema "
                             "FROM timescaledb_information.continuous_aggregates", prepare=False).fetchall()
        jobs = conn.execute("SELECT hypertable_schema, proc_name, count(*) FROM timescaledb_information.jobs "
                            "WHERE hypertable_schema IS NOT NULL GROUP BY 1, 2", prepare=False).fetchall()
        retention = retention_policies(conn)
    for schema in ("public", f"tenant_{acme}", f"tenant_{globex}"):
        assert sorted(t for s, t in hypertables if s == schema) == HYPERTABLES
        # Each tenant's aggregates read its own hypertables, not public's.
        assert sorted(v for s, v, _ in caggs if s == schema) == CAGGS
        assert {h for s, _, h in caggs if s == schema} == {schema}
    policies = {(schema, proc): n for schema, proc, n in jobs}
    for schema in (f"tenant_{acme}", f"tenant_{globex}"):
        assert policies[(schema, "policy_compression")] == len(HYPERTABLES)
        assert policies[(schema, "policy_retention")] == len(HYPERTABLES)
    for table in HYPERTABLES:
        assert retention[("public", table)] == "30 days"
        assert retention[(f"tenant_{acme}", table)] == "7 days"
        assert retention[(f"tenant_{globex}", table)] == "90 days"


def test_everything_is_in_step_afterwards(tenants, timescale_dsn, timescale):
    acme, _globex, _results = tenants
    again = sinkframe(timescale_dsn, "tenants", "add", acme)
    assert again.exit_code == 0, again.output
    assert again.stdout == "" and "already up to date" in again.stderr and "retention 7 days" in again.stderr
    plan = sinkframe(timescale_dsn, "schema", "plan", "--detailed-exitcode")
    assert plan.exit_code == 0, plan.output
    assert plan.stdout == "" and "drift" not in plan.stderr
    assert "nothing to apply" in plan.stderr and "(public and 2 tenant schema(s))" in plan.stderr


def test_a_tenants_retention_and_aggregates_work_on_its_rows_only(tenants, timescale_dsn, timescale):
    timescale.hold_jobs()
    acme, globex, _results = tenants
    now = datetime.now(timezone.utc)
    old, recent = now - timedelta(days=20), now - timedelta(hours=3)
    insert = ("INSERT INTO {} (time, device_id, source_topic, source_partition, source_offset) "
              "VALUES (%s, %s, 'iot.raw', 0, 0)")
    with timescale.connect() as conn:
        for name in (acme, globex):
            table = sql.Identifier(f"tenant_{name}", "iot_raw_data")
            for at in (old, recent):
                conn.execute(sql.SQL(insert).format(table), [at, name], prepare=False)
        for name in (acme, globex):
            (job,) = conn.execute(
                "SELECT job_id FROM timescaledb_information.jobs WHERE proc_name = 'policy_retention' "
                "AND hypertable_schema = %s AND hypertable_name = 'iot_raw_data'", [f"tenant_{name}"],
                prepare=False).fetchone()
            conn.execute(sql.SQL("CALL run_job({})").format(sql.Literal(job)), prepare=False)
            cagg = sql.Identifier(f"tenant_{name}", "iot_raw_hourly_counts")
            conn.execute(sql.SQL("CALL refresh_continuous_aggregate({}, NULL, NULL)").format(
                sql.Literal(f"tenant_{name}.iot_raw_hourly_counts")), prepare=False)
        kept = {name: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
            sql.Identifier(f"tenant_{name}", "iot_raw_data")), prepare=False).fetchone()[0] for name in (acme, globex)}
        counted = {name: conn.execute(sql.SQL("SELECT device_id, sum(message_count) FROM {} GROUP BY 1").format(
            sql.Identifier(f"tenant_{name}", "iot_raw_hourly_counts")), prepare=False).fetchall()
            for name in (acme, globex)}
        public = conn.execute("SELECT count(*) FROM public.iot_raw_hourly_counts", prepare=False).fetchone()[0]
    # 20 days old: past acme's 7 days (its chunk dropped), within globex's 90 days.
    assert kept == {acme: 1, globex: 2}
    assert counted == {acme: [(acme, 1)], globex: [(globex, 2)]}
    assert public == 0


def test_a_tenants_role_reads_its_aggregates_and_not_anothers(tenants, timescale_dsn, timescale):
    acme, globex, _results = tenants
    with timescale.connect() as conn:
        # The engine has one session for every connection: SET ROLE, and always back.
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(f"tenant_{acme}")), prepare=False)
        try:
            for cagg in CAGGS:
                conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(f"tenant_{acme}", cagg)),
                             prepare=False)
            for relation in (sql.Identifier(f"tenant_{globex}", "iot_raw_hourly_counts"),
                             sql.Identifier("public", "iot_raw_hourly_counts"),
                             sql.Identifier("public", "iot_raw_data")):
                with pytest.raises(errors.InsufficientPrivilege):
                    conn.execute(sql.SQL("SELECT count(*) FROM {}").format(relation), prepare=False)
        finally:
            conn.execute("RESET ROLE", prepare=False)


def test_remove_with_drop_data_takes_the_schema_and_its_jobs(tenants, timescale_dsn, timescale):
    _acme, globex, _results = tenants
    # On a real server the scheduler may be running one of the schema's jobs as it is dropped;
    # `tenants remove` retries that race rather than fail (tenants/remove.py).
    result = sinkframe(timescale_dsn, "tenants", "remove", globex, "--yes", "--drop-data")
    assert result.exit_code == 0, result.output
    with timescale.connect() as conn:
        left = conn.execute("SELECT count(*) FROM timescaledb_information.jobs WHERE hypertable_schema = %s",
                            [f"tenant_{globex}"], prepare=False).fetchone()[0]
        retention = retention_policies(conn)
    assert left == 0
    assert retention[("public", "iot_raw_data")] == "30 days"


def test_a_tenants_own_policies_run_on_its_schema_only(real_timescale):
    """On a real server only: its scheduler runs acme's retention and compression policies."""
    acme = unique("acme")
    env = {"SINKFRAME_PLAIN_POSTGRES": None, "SINKFRAME_SCHEMA_DIR": str(REPO / "schema")}
    try:
        for args in (("schema", "apply"), ("tenants", "add", acme, "--retention", "7 days")):
            result = run(*args, "--database-url", real_timescale.dsn, env=env)
            assert result.exit_code == 0, result.output
        now = datetime.now(timezone.utc)
        rows = [(now - timedelta(days=20), "expired"), (now - timedelta(days=2), "compressed")]
        schema = f"tenant_{acme}"
        with real_timescale.connect() as conn:
            for where in (schema, "public"):
                insert_raw(conn, sql.Identifier(where, "iot_raw_data"), rows)
            jobs = [job_id(conn, "iot_raw_data", proc, schema) for proc in ("policy_retention", "policy_compression")]
            for job in jobs:
                run_by_scheduler(conn, job)
        with real_timescale.connect() as conn:
            tenant_rows = [d for (d,) in conn.execute(sql.SQL("SELECT device_id FROM {}").format(
                sql.Identifier(schema, "iot_raw_data")))]
            public_rows = conn.execute("SELECT count(*) FROM public.iot_raw_data").fetchone()[0]
            chunks = conn.execute("SELECT hypertable_schema, is_compressed, count(*) "
                                  "FROM timescaledb_information.chunks WHERE hypertable_name = 'iot_raw_data' "
                                  "GROUP BY 1, 2").fetchall()
        assert tenant_rows == ["compressed"]  # 20 days: past acme's 7 days
        assert public_rows == 2  # public's policies were not scheduled: its rows untouched
        assert sorted(chunks) == [("public", False, 2), (schema, True, 1)]
    finally:
        drop_roles(real_timescale.dsn, [acme])
