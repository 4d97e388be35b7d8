"""Connected as a tenant's role on the real PostgreSQL: its own schema reads, nothing else does.

The local server trusts connections from 127.0.0.1 (pg_hba `trust`), so a role
can log in there without its password; the password test then checks what was
stored (a SCRAM hash, never the cleartext) and the login check itself runs only
against a server that asks for passwords.
"""
from __future__ import annotations

import psycopg
import pytest
from psycopg import errors, sql

from sinkframe.pipeline.offsets import CREATE_OFFSETS_TABLE

from sinktest.paths import REPO
from tenanthelp import as_role, run

PASSWORD = "c0rrect horse 'battery' staple"
ENV = {"SINKFRAME_PLAIN_POSTGRES": "1", "SINKFRAME_SCHEMA_DIR": str(REPO / "schema"), "ACME_PASSWORD": PASSWORD}


def sinkframe(dsn: str, *args: str):
    return run(*args, "--database-url", dsn, env=ENV)


@pytest.fixture
def tenants(pg_dsn, tenant_names):
    """public's tables, the offsets table and two tenants, acme with a password; a row in each."""
    acme, globex = tenant_names("acme", "globex")
    assert sinkframe(pg_dsn, "schema", "apply").exit_code == 0
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(CREATE_OFFSETS_TABLE)
        conn.execute("INSERT INTO sinkframe_offsets (consumer_group, topic, partition, next_offset) "
                     "VALUES ('g', 't', 0, 42)")
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


def server_trusts_local_connections(conn) -> bool:
    methods = {r[0] for r in conn.execute(
        "SELECT auth_method FROM pg_hba_file_rules WHERE type IN ('host', 'local') AND error IS NULL")}
    return methods <= {"trust"}


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
                  sql.Identifier("public", "sinkframe_offsets"), sql.Identifier("public", "iot_raw_data"),
                  sql.Identifier("public", "sinkframe_tenants")]
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
        if server_trusts_local_connections(conn):
            pytest.skip("this server trusts local connections (pg_hba trust): any password logs in")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(as_role(pg_dsn, f"tenant_{acme}", "wrong")).close()
    psycopg.connect(as_role(pg_dsn, f"tenant_{acme}", PASSWORD)).close()


def test_a_grant_to_public_is_reported_as_broken_isolation(pg_dsn, tenants):
    acme, _ = tenants
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("GRANT SELECT ON sinkframe_offsets TO PUBLIC")
    broken = sinkframe(pg_dsn, "tenants", "add", acme)
    assert broken.exit_code == 1
    assert (f"error: isolation: role tenant_{acme} can read public.sinkframe_offsets (granted to it or to "
            "PUBLIC): REVOKE SELECT ON public.sinkframe_offsets FROM PUBLIC") in broken.stderr
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("REVOKE SELECT ON sinkframe_offsets FROM PUBLIC")
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
