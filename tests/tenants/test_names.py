"""Tenant names: a plain identifier, or a clear refusal before anything runs."""
from __future__ import annotations

import psycopg
import pytest

from sinkframe.errors import ConfigError
from sinkframe.tenants.registry import Tenant, check_name, is_tenant_name, role_for, schema_for

from tenanthelp import run

HOSTILE = ["acme; drop table x", "Acme", "a-b", '"x"', "", "a" * 50, "tenant$", "acme\n", "1acme", "_acme",
           "acmé", "a b", "acme'--", "a" * 42]
# A port nothing listens on: a command that tried to connect would fail with a connection error instead.
NOWHERE = "postgresql://postgres@127.0.0.1:1/nowhere?connect_timeout=1"


@pytest.mark.parametrize("name", ["a", "acme", "acme_2", "a1_b2", "a" * 41])
def test_plain_identifiers_are_tenant_names(name):
    assert check_name(name) == name and is_tenant_name(name)
    assert schema_for(name) == role_for(name) == f"tenant_{name}"


@pytest.mark.parametrize("name", HOSTILE)
def test_anything_else_is_refused_with_what_a_name_may_be(name):
    with pytest.raises(ConfigError) as caught:
        schema_for(name)
    message = str(caught.value)
    assert repr(name) in message
    assert "1 to 41 lowercase letters, digits and underscores, starting with a letter" in message
    assert not is_tenant_name(name)
    with pytest.raises(ConfigError):
        Tenant(name)


def test_non_text_is_not_a_name():
    assert not any(is_tenant_name(v) for v in (None, 1, b"acme", ["acme"]))


@pytest.mark.parametrize("args", [("tenants", "add"), ("tenants", "plan"), ("tenants", "add", "--dry-run"),
                                  ("tenants", "remove", "--yes", "--drop-data")])
@pytest.mark.parametrize("name", HOSTILE[:7])
def test_commands_refuse_before_connecting(args, name):
    result = run(*args, name, "--database-url", NOWHERE)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: tenant name {name!r} is not allowed")
    assert "nothing was done" in result.stderr
    assert "connect" not in result.stderr


def test_export_refuses_a_hostile_tenant_before_connecting():
    result = run("export", "iot_raw_data", "--tenant", "acme; drop table x", "--database-url", NOWHERE)
    assert result.exit_code == 2, result.output
    assert "error: tenant name 'acme; drop table x' is not allowed" in result.stderr


def test_nothing_is_created_on_a_real_server(pg_dsn):
    def objects(conn):
        return (conn.execute("SELECT count(*) FROM pg_namespace").fetchone()[0],
                conn.execute("SELECT count(*) FROM pg_roles").fetchone()[0],
                conn.execute("SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace").fetchone()[0])

    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        before = objects(conn)
        for name in HOSTILE:
            result = run("tenants", "add", name, "--database-url", pg_dsn, "--retention", "7 days",
                         env={"SINKFRAME_PLAIN_POSTGRES": "1"})
            assert result.exit_code == 2 and "is not allowed" in result.stderr, result.output
        assert objects(conn) == before
