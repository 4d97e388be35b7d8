"""Connected as a tenant's role on a real PostgreSQL that asks for passwords: its own schema reads, nothing else.

The machine's shared server trusts connections from 127.0.0.1 (pg_hba `trust`),
where any password logs in; so this module runs on a PostgreSQL server of its
own (tests/sinktest/pgserver.py) with `scram-sha-256` over TCP, and every login
here, the administrator's included, gives its password. Each test gets a
database of its own on that server; the tenants' roles (cluster-wide) go with
the server at the end of the module.

What a tenant must not read covers every table the sink keeps in public: the
offsets, the dead letters (the raw messages of every tenant), the alert
transitions and states, and the tenant registry.
"""
from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg import errors, sql

from sinkframe.alerts import store
from sinkframe.pipeline.write.deadletter import create_dead_letter_table
from sinkframe.pipeline.write.offsets import CREATE_OFFSETS_TABLE

from sinktest.paths import REPO
from sinktest.pgserver import PrivatePostgres, skip_without_server_binaries
from tenanthelp import as_role, run, unique

PASSWORD = "c0rrect horse 'battery' staple"
ADMIN_PASSWORD = "admin s3cret"
ENV = {"SINKFRAME_PLAIN_POSTGRES": "1", "SINKFRAME_SCHEMA_DIR": str(REPO / "schema"), "ACME_PASSWORD": PASSWORD}
# The sink's tables in public, each with the statement that makes it.
SINK_TABLES = {"sinkframe_offsets": CREATE_OFFSETS_TABLE,
               "sinkframe_dead_letters": create_dead_letter_table("sinkframe_dead_letters"),
               store.ALERTS_TABLE: store.CREATE_ALERTS_TABLE, store.STATES_TABLE: store.CREATE_STATES_TABLE}


def sinkframe(dsn: str, *args: str):
    return run(*args, "--database-url", dsn, env=ENV)


@pytest.fixture(scope="module")
def server():
    skip_without_server_binaries()
    with PrivatePostgres(password=ADMIN_PASSWORD) as server:
        yield server


@pytest.fixture
def pg_dsn(server):
    """A database of this test's own on the password-checking server (as its administrator)."""
    name = f"isolation_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return server.dsn(name)


@pytest.fixture
def tenants(pg_dsn):
    """public's tables, the sink's own tables and two tenants, acme with a password; a row in each."""
    acme, globex = unique("acme"), unique("globex")
    assert sinkframe(pg_dsn, "schema", "apply").exit_code == 0
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for create in SINK_TABLES.values():
            conn.execute(create)
        conn.execute("INSERT INTO sinkframe_offsets (consumer_group, topic, partition, next_offset) "
                     "VALUES ('g', 't', 0, 42)")
        conn.execute("INSERT INTO sinkframe_dead_letters (connector, topic, partition, kafka_offset, value, stage, "
                     "error_class, error_message) VALUES ('c', 't', 0, 7, 'a secret payload', 'route', "
                     "'UnknownTenant', 'x')")
        conn.execute("INSERT INTO sinkframe_alerts (connector, alert, alert_key, state, severity, source_topic, "
                     "source_partition, source_offset) VALUES (%s, 'hot', 'dev-1', 'firing', 'critical', 't', 0, 1)",
                     [f"c/{globex}"])
        conn.execute("INSERT INTO sinkframe_alert_states (connector, alert, alert_key, state) "
                     "VALUES (%s, 'hot', 'dev-1', 'firing')", [f"c/{globex}"])
    added = sinkframe(pg_dsn, "tenants", "add", acme, "--password-env", "ACME_PASSWORD")
    assert added.exit_code == 0, added.output
    assert PASSWORD not in added.output
    assert sinkframe(pg_dsn, "tenants", "add", globex).exit_code == 0
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for schema in ("public", f"tenant_{acme}", f"tenant_{globex}"):
            conn.execute(sql.SQL("INSERT INTO {} (time, device_id, source_topic, source_partition, source_offset) "
                                 "VALUES (now(), %s, 't', 0, 0)").format(sql.Identifier(schema, "iot_raw_data")),
                         [schema])
    return acme, globex


def tcp_auth_methods(conn) -> set[str]:
    return {r[0] for r in conn.execute("SELECT auth_method FROM pg_hba_file_rules WHERE type = 'host' "
                                       "AND error IS NULL")}


def test_a_tenant_reads_its_own_schema_and_nothing_else(pg_dsn, tenants):
    acme, globex = tenants
    own, other = f"tenant_{acme}", f"tenant_{globex}"
    with psycopg.connect(as_role(pg_dsn, own, PASSWORD), autocommit=True) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (own,)
        assert conn.execute(sql.SQL("SELECT device_id FROM {}").format(
            sql.Identifier(own, "iot_raw_data"))).fetchall() == [(own,)]
        # Its default search path ("$user", public) finds its own schema first: the role is named like it.
        assert conn.execute("SELECT device_id FROM iot_raw_data").fetchall() == [(own,)]
        for table in ("device_metadata", "iot_enriched_data", "smart_breaker_data"):
            conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(own, table)))
        denied = [sql.Identifier(other, "iot_raw_data"), sql.Identifier(other, "device_metadata"),
                  sql.Identifier("public", "iot_raw_data"), sql.Identifier("public", "sinkframe_tenants"),
                  *(sql.Identifier("public", table) for table in SINK_TABLES)]
        for relation in denied:
            with pytest.raises(errors.InsufficientPrivilege, match="permission denied"):
                conn.execute(sql.SQL("SELECT * FROM {}").format(relation))
        # Read-only, in its own schema too.
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute(sql.SQL("INSERT INTO {} (time, device_id, source_topic, source_partition, source_offset) "
                                 "VALUES (now(), 'x', 't', 0, 0)").format(sql.Identifier(own, "iot_raw_data")))
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute(sql.SQL("CREATE TABLE {} (x int)").format(sql.Identifier(own, "mine")))
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(own, "iot_raw_data")))


def test_the_password_is_stored_as_a_scram_hash(pg_dsn, tenants):
    acme, _ = tenants
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        (stored,) = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", [f"tenant_{acme}"]).fetchone()
    assert stored.startswith("SCRAM-SHA-256$") and PASSWORD not in stored


def test_a_wrong_password_is_refused_where_the_server_asks_for_one(pg_dsn, tenants):
    acme, _ = tenants
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        assert tcp_auth_methods(conn) == {"scram-sha-256"}  # this server asks everyone for a password
    with pytest.raises(psycopg.OperationalError, match="no password supplied"):
        psycopg.connect(as_role(pg_dsn, f"tenant_{acme}", None)).close()
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(as_role(pg_dsn, f"tenant_{acme}", "wrong")).close()
    psycopg.connect(as_role(pg_dsn, f"tenant_{acme}", PASSWORD)).close()


@pytest.mark.parametrize("table", list(SINK_TABLES))
def test_a_grant_to_public_is_reported_as_broken_isolation(pg_dsn, tenants, table):
    acme, _ = tenants
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("GRANT SELECT ON {} TO PUBLIC").format(sql.Identifier(table)))
    broken = sinkframe(pg_dsn, "tenants", "add", acme)
    assert broken.exit_code == 1
    assert (f"error: isolation: role tenant_{acme} can read public.{table} (granted to it or to "
            f"PUBLIC): REVOKE SELECT ON public.{table} FROM PUBLIC") in broken.stderr
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("REVOKE SELECT ON {} FROM PUBLIC").format(sql.Identifier(table)))
    assert sinkframe(pg_dsn, "tenants", "plan", acme).exit_code == 0


def test_remove_ends_the_open_sessions_and_the_login(pg_dsn, tenants):
    acme, _ = tenants
    session = psycopg.connect(as_role(pg_dsn, f"tenant_{acme}", PASSWORD), autocommit=True)
    try:
        removed = sinkframe(pg_dsn, "tenants", "remove", acme, "--yes")
        assert removed.exit_code == 0, removed.output
        assert f"done: end the open sessions of tenant_{acme}" in removed.stdout
        with pytest.raises(psycopg.OperationalError):
            session.execute("SELECT 1")
    finally:
        session.close()
    with pytest.raises(psycopg.OperationalError, match="not permitted to log in"):
        psycopg.connect(as_role(pg_dsn, f"tenant_{acme}", PASSWORD)).close()
