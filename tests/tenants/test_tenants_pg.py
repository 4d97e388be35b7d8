"""`sinkframe tenants add|plan|list|remove`, `schema plan|apply` and `export --tenant` on plain PostgreSQL.

Plain PostgreSQL has no TimescaleDB, so these run with the opt-in
(SINKFRAME_PLAIN_POSTGRES=1): every table and index, TimescaleDB objects skipped.
The hypertables, continuous aggregates and retention policies of a tenant are
checked on the TimescaleDB engine in test_tenants_timescale.py.
"""
from __future__ import annotations

import csv
import io
import json
import shutil
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
from psycopg import sql

from sinkframe.errors import SchemaError
from sinkframe.schema import load_schema
from sinkframe.tenants.provision import tenant_search_path
from sinkframe.tenants.registry import known_tenants, load_tenants

from sinktest.paths import REPO
from tenanthelp import run

SPEC = load_schema(REPO / "schema", env={})
TABLES = sorted(SPEC.table_names())
PLAIN = {"SINKFRAME_PLAIN_POSTGRES": "1"}
T0 = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1)


def sinkframe(dsn: str, *args: str, env: dict | None = None):
    return run(*args, "--database-url", dsn, env={**PLAIN, "SINKFRAME_SCHEMA_DIR": str(REPO / "schema"),
                                                   **(env or {})})


def relations(conn, schema: str) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm') ORDER BY 1", [schema])]


def exists(conn, name: str) -> bool:
    """Anything of tenant `name`: its schema or its role."""
    return conn.execute("SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = %s) "
                        "OR EXISTS (SELECT FROM pg_roles WHERE rolname = %s)",
                        [f"tenant_{name}", f"tenant_{name}"]).fetchone()[0]


def insert_raw(conn, schema: str, rows: list[tuple[datetime, str]]) -> None:
    with conn.cursor() as cur:
        cur.executemany(sql.SQL("INSERT INTO {} (time, device_id, source_topic, source_partition, source_offset) "
                                "VALUES (%s, %s, 'iot.raw', 0, %s)").format(sql.Identifier(schema, "iot_raw_data")),
                        [(t, device, i) for i, (t, device) in enumerate(rows)])


@pytest.fixture
def two_tenants(pg_dsn, tenant_names):
    """public's schema applied (with a row in it), then acme (7 days) and globex (90 days) added."""
    acme, globex = tenant_names("acme", "globex")
    assert sinkframe(pg_dsn, "schema", "apply").exit_code == 0
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        insert_raw(conn, "public", [(T0, "public-device")])
    for name, retention in ((acme, "7 days"), (globex, "90 days")):
        result = sinkframe(pg_dsn, "tenants", "add", name, "--retention", retention)
        assert result.exit_code == 0, result.output
        assert f"tenant {name}: " in result.stderr and f"retention {retention}" in result.stderr
    return acme, globex


def test_two_tenants_get_every_table_and_their_own_retention(pg_dsn, two_tenants):
    acme, globex = two_tenants
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        assert known_tenants(conn) == {acme: f"tenant_{acme}", globex: f"tenant_{globex}"}
        recorded = {t.name: t.retention for t in load_tenants(conn)}
        row = conn.execute("SELECT schema_name, role_name FROM public.sinkframe_tenants WHERE name = %s",
                           [acme]).fetchone()
        assert relations(conn, f"tenant_{acme}") == relations(conn, f"tenant_{globex}") == TABLES
        # Nothing of a tenant fell through to public: public has its tables and the registry, no more.
        assert relations(conn, "public") == sorted([*TABLES, "sinkframe_tenants"])
        assert conn.execute("SELECT device_id FROM public.iot_raw_data").fetchall() == [("public-device",)]
        assert conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
            sql.Identifier(f"tenant_{acme}", "iot_raw_data"))).fetchone()[0] == 0
        indexes = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = %s",
                                              [f"tenant_{acme}"])}
    assert recorded == {acme: "7 days", globex: "90 days"}
    assert row == (f"tenant_{acme}", f"tenant_{acme}")
    assert {"iot_raw_data_device_id_time_idx", "iot_raw_data_time_idx", "device_metadata_pkey"} <= indexes


def test_the_retention_reaches_the_plan_and_a_second_add_changes_nothing(pg_dsn, two_tenants):
    acme, globex = two_tenants
    again = sinkframe(pg_dsn, "tenants", "add", acme)
    assert again.exit_code == 0, again.output
    assert again.stdout == ""
    assert f"tenant {acme} is already up to date" in again.stderr and "retention 7 days" in again.stderr
    plan = sinkframe(pg_dsn, "tenants", "plan", globex)
    assert plan.exit_code == 0 and plan.stdout == ""
    assert f"tenant {globex} is up to date" in plan.stderr
    # What plain PostgreSQL skipped says which retention each tenant would have on TimescaleDB.
    assert "skipped: retention policy of iot_raw_data (drop_after 90 days)" in plan.stderr
    dry = sinkframe(pg_dsn, "tenants", "add", acme, "--retention", "14 days", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert f"INSERT INTO \"public\".\"sinkframe_tenants\"" in dry.stdout and "'14 days'" in dry.stdout
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        assert {t.name: t.retention for t in load_tenants(conn)}[acme] == "7 days"  # a dry run changed nothing
    back = sinkframe(pg_dsn, "tenants", "add", acme, "--retention", "spec")
    assert back.exit_code == 0, back.output
    assert "retention from the specs" in back.stderr
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        assert {t.name: t.retention for t in load_tenants(conn)}[acme] is None


def test_plan_of_a_new_tenant_prints_the_sql_and_creates_nothing(pg_dsn, tenant_names):
    (name,) = tenant_names("initech")
    result = sinkframe(pg_dsn, "tenants", "plan", name, "--retention", "30 days")
    assert result.exit_code == 0, result.output
    script = result.stdout
    for expected in (f'CREATE SCHEMA IF NOT EXISTS "tenant_{name}"', f'CREATE ROLE "tenant_{name}" LOGIN',
                     f'SET search_path TO "tenant_{name}";', 'CREATE TABLE IF NOT EXISTS "iot_raw_data"',
                     f'GRANT USAGE ON SCHEMA "tenant_{name}" TO "tenant_{name}"',
                     f'GRANT SELECT ON ALL TABLES IN SCHEMA "tenant_{name}" TO "tenant_{name}"',
                     f'ALTER DEFAULT PRIVILEGES IN SCHEMA "tenant_{name}" GRANT SELECT ON TABLES TO "tenant_{name}"',
                     'CREATE TABLE IF NOT EXISTS "public"."sinkframe_tenants"'):
        assert expected in script
    # The registry row is the last statement: the router sees a tenant only once it is complete.
    assert script.rstrip().splitlines()[-2].startswith('INSERT INTO "public"."sinkframe_tenants"')
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        assert not exists(conn, name)
        assert conn.execute("SELECT to_regclass('public.sinkframe_tenants')").fetchone()[0] is None


@pytest.mark.parametrize("retention, message", [
    ("soon", "not an interval PostgreSQL reads"),
    ("7 days'; DROP TABLE iot_raw_data; --", "not an interval PostgreSQL reads"),
    ("-5 days", "must be longer than zero"),
    ("1 day", "refreshes from 3 days ago"),
])
def test_a_bad_retention_is_refused_with_nothing_created(pg_dsn, tenant_names, retention, message):
    (name,) = tenant_names("hooli")
    result = sinkframe(pg_dsn, "tenants", "add", name, "--retention", retention)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and result.stdout == ""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        assert not exists(conn, name)


def test_without_the_plain_postgres_opt_in_nothing_is_created(pg_dsn, tenant_names):
    (name,) = tenant_names("umbrella")
    result = sinkframe(pg_dsn, "tenants", "add", name, env={"SINKFRAME_PLAIN_POSTGRES": None})
    assert result.exit_code == 1, result.output
    assert "timescaledb extension is not installed" in result.stderr and "SINKFRAME_PLAIN_POSTGRES=1" in result.stderr
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        assert not exists(conn, name)


def test_a_missing_password_variable_is_refused(pg_dsn, tenant_names):
    (name,) = tenant_names("acme")
    result = sinkframe(pg_dsn, "tenants", "add", name, "--password-env", "NO_SUCH_VARIABLE_HERE",
                       env={"NO_SUCH_VARIABLE_HERE": None})
    assert result.exit_code == 2
    assert "--password-env NO_SUCH_VARIABLE_HERE: that environment variable is not set" in result.stderr


def test_list_shows_each_tenant_with_its_row_counts(pg_dsn, two_tenants):
    acme, globex = two_tenants
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        insert_raw(conn, f"tenant_{acme}", [(T0, "a-1"), (T0, "a-2"), (T0 + timedelta(minutes=1), "a-1")])
        insert_raw(conn, f"tenant_{globex}", [(T0, "g-1")])
    listed = sinkframe(pg_dsn, "tenants", "list", "-o", "json")
    assert listed.exit_code == 0, listed.output
    by_name = {t["name"]: t for t in json.loads(listed.stdout)}
    assert set(by_name) == {acme, globex}
    assert by_name[acme]["rows"] == {"device_metadata": 0, "iot_enriched_data": 0, "iot_raw_data": 3,
                                     "smart_breaker_data": 0}
    assert by_name[globex]["rows"]["iot_raw_data"] == 1
    assert by_name[acme]["retention"] == "7 days" and by_name[globex]["retention"] == "90 days"
    assert by_name[acme]["schema"] == by_name[acme]["role"] == f"tenant_{acme}" and by_name[acme]["login"]
    text = sinkframe(pg_dsn, "tenants", "list")
    assert f"{acme}: schema tenant_{acme}, role tenant_{acme} (login), retention 7 days" in text.stdout
    assert any(line.split() == ["iot_raw_data", "3", "rows"] for line in text.stdout.splitlines())


def test_list_with_no_tenants(pg_dsn):
    result = sinkframe(pg_dsn, "tenants", "list")
    assert result.exit_code == 0 and result.stdout == ""
    assert "no tenants" in result.stderr


def test_remove_keeps_the_data_unless_drop_data(pg_dsn, two_tenants):
    acme, globex = two_tenants
    schema = f"tenant_{acme}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        insert_raw(conn, schema, [(T0, "a-1")])

    unconfirmed = sinkframe(pg_dsn, "tenants", "remove", acme)
    assert unconfirmed.exit_code == 1
    assert "DELETE FROM" in unconfirmed.stdout and "needs --yes" in unconfirmed.stderr

    kept = sinkframe(pg_dsn, "tenants", "remove", acme, "--yes")
    assert kept.exit_code == 0, kept.output
    assert f"rows are kept in schema {schema}" in kept.stderr
    assert f"sinkframe tenants add {acme} --retention '7 days'" in kept.stderr
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        assert set(known_tenants(conn)) == {globex}
        assert conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
            sql.Identifier(schema, "iot_raw_data"))).fetchone()[0] == 1
        assert conn.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", [schema]).fetchone() == (False,)

    again = sinkframe(pg_dsn, "tenants", "remove", acme, "--yes")
    assert again.exit_code == 2 and "add --drop-data to drop them" in again.stderr

    back = sinkframe(pg_dsn, "tenants", "add", acme, "--retention", "7 days")
    assert back.exit_code == 0, back.output
    assert "let role" in back.stdout and "log in again" in back.stdout and "create table" not in back.stdout
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        assert set(known_tenants(conn)) == {acme, globex}

    dropped = sinkframe(pg_dsn, "tenants", "remove", acme, "--yes", "--drop-data")
    assert dropped.exit_code == 0, dropped.output
    assert f"drop schema {schema}" in dropped.stdout and f"drop role {schema}" in dropped.stdout
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        assert set(known_tenants(conn)) == {globex}
        assert conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", [schema]).fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM pg_roles WHERE rolname = %s", [schema]).fetchone()[0] == 0
        assert relations(conn, f"tenant_{globex}") == TABLES

    gone = sinkframe(pg_dsn, "tenants", "remove", acme, "--yes", "--drop-data")
    assert gone.exit_code == 2 and f"no tenant named {acme} (registered: {globex})" in gone.stderr


def test_schema_apply_keeps_every_tenant_in_step(pg_dsn, two_tenants, tmp_path):
    acme, globex = two_tenants
    specs = tmp_path / "schema"
    shutil.copytree(REPO / "schema", specs)
    raw = specs / "iot_raw.yaml"
    raw.write_text(raw.read_text().replace(
        "      - {name: mqtt_topic, type: text}\n",
        "      - {name: mqtt_topic, type: text}\n      - {name: firmware, type: text}\n"))
    (specs / "notes.yaml").write_text(
        "tables:\n  device_notes:\n    columns:\n      - {name: device_id, type: text, nullable: false}\n"
        "      - {name: note, type: text}\n")

    plan = sinkframe(pg_dsn, "schema", "plan", str(specs), "--detailed-exitcode")
    assert plan.exit_code == 2, plan.output
    assert plan.stdout.count('ALTER TABLE "iot_raw_data" ADD COLUMN IF NOT EXISTS "firmware" text') == 3
    assert plan.stdout.count('CREATE TABLE IF NOT EXISTS "device_notes"') == 3
    for name in (acme, globex):
        assert f'-- tenant {name} (schema tenant_{name})\n' in plan.stdout
        assert f'SET search_path TO "tenant_{name}";' in plan.stdout
        assert f"tenant {name}: drift: iot_raw_data.firmware: column is missing" in plan.stderr
    assert "(public and 2 tenant schema(s))" in plan.stderr

    applied = sinkframe(pg_dsn, "schema", "apply", str(specs))
    assert applied.exit_code == 0, applied.output
    assert f"applied: tenant {acme}: add column iot_raw_data.firmware" in applied.stdout
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        having = {r[0] for r in conn.execute(
            "SELECT table_schema FROM information_schema.columns WHERE table_name = 'iot_raw_data' "
            "AND column_name = 'firmware'")}
        assert having == {"public", f"tenant_{acme}", f"tenant_{globex}"}
        for name in (acme, globex):
            assert "device_notes" in relations(conn, f"tenant_{name}")
            readable = conn.execute("SELECT has_table_privilege(%s, %s, 'SELECT')",
                                    [f"tenant_{name}", f"tenant_{name}.device_notes"]).fetchone()[0]
            assert readable, "a table added later is readable by the tenant's role"

    second = sinkframe(pg_dsn, "schema", "plan", str(specs), "--detailed-exitcode")
    assert second.exit_code == 0 and second.stdout == "", second.output
    assert "nothing to apply" in second.stderr


def test_a_registered_tenant_whose_schema_was_dropped_stops_apply_before_public_is_touched_twice(
        pg_dsn, two_tenants):
    acme, _globex = two_tenants
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(f"tenant_{acme}")))
        before = relations(conn, "public")
    result = sinkframe(pg_dsn, "schema", "apply")
    assert result.exit_code == 1
    assert f"tenant {acme} is registered but its schema tenant_{acme} does not exist" in result.stderr
    assert f"sinkframe tenants add {acme}" in result.stderr
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        assert relations(conn, "public") == before


def test_the_search_path_guard_refuses_a_missing_schema(pg_dsn):
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        path = conn.execute("SHOW search_path").fetchone()[0]
        with pytest.raises(SchemaError, match="schema tenant_nope does not exist, so its objects would go to"):
            with tenant_search_path(conn, "tenant_nope", "public"):
                pass
        assert conn.execute("SHOW search_path").fetchone()[0] == path


def test_export_reads_the_tenants_own_table(pg_dsn, two_tenants, tmp_path):
    acme, globex = two_tenants
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        insert_raw(conn, f"tenant_{acme}", [(T0, "a-1"), (T0 + timedelta(minutes=5), "a-2")])
        insert_raw(conn, f"tenant_{globex}", [(T0, "g-1")])
    since, until = (T0 - timedelta(hours=1)).isoformat(), (T0 + timedelta(hours=1)).isoformat()
    out = tmp_path / "acme.csv"
    result = sinkframe(pg_dsn, "export", "iot_raw_data", "--tenant", acme, "--since", since, "--until", until,
                       "-o", str(out))
    assert result.exit_code == 0, result.output
    assert f"exported 2 rows" in result.stderr and f"of tenant {acme}" in result.stderr
    assert [r["device_id"] for r in csv.DictReader(io.StringIO(out.read_text()))] == ["a-1", "a-2"]

    unknown = sinkframe(pg_dsn, "export", "iot_raw_data", "--tenant", "nobody", "--since", since)
    assert unknown.exit_code == 2 and "no tenant named 'nobody'" in unknown.stderr
    qualified = sinkframe(pg_dsn, "export", "public.iot_raw_data", "--tenant", acme, "--since", since)
    assert qualified.exit_code == 2 and "name the table without a schema" in qualified.stderr
    missing = sinkframe(pg_dsn, "export", "nope", "--tenant", acme, "--since", since)
    assert missing.exit_code == 2 and f"no table or view named 'nope' in schema tenant_{acme}" in missing.stderr


def test_a_hand_made_registry_row_with_a_bad_name_is_ignored(pg_dsn, two_tenants):
    acme, globex = two_tenants
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO public.sinkframe_tenants (name, schema_name, role_name) "
                     "VALUES ('x; drop table y', 'public', 'postgres')")
        assert set(known_tenants(conn)) == {acme, globex}


def test_known_tenants_before_any_tenant_leaves_the_transaction_usable(pg_dsn):
    with psycopg.connect(pg_dsn) as conn:  # not autocommit: inside the caller's transaction
        assert known_tenants(conn) == {}
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        assert conn.execute("SELECT 1").fetchone() == (1,)
