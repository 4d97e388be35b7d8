"""Helpers of the tenant tests: unique names, cleanup of roles, connecting as a role, the CLI."""
from __future__ import annotations

import time
import uuid

import psycopg
from click.testing import CliRunner
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from sinkframe.cli import cli
from sinkframe.tenants.registry import role_for


def unique(base: str) -> str:
    return f"{base}_{uuid.uuid4().hex[:8]}"


def drop_roles(dsn: str, names: list[str], *, connect=None) -> None:
    """Drop the tenants' roles; DROP OWNED BY first takes their privileges in this database."""
    connect = connect or (lambda: psycopg.connect(dsn, autocommit=True))
    with connect() as conn:
        for name in names:
            role = role_for(name)
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role], prepare=False).fetchone():
                conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)), prepare=False)
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)), prepare=False)


def as_role(dsn: str, role: str, password: str | None = None) -> str:
    params = conninfo_to_dict(dsn)
    params["user"] = role
    params.pop("password", None)
    if password is not None:
        params["password"] = password
    return make_conninfo("", **params)


def run(*args: str, env: dict | None = None, pause: float = 0.0):
    """`sinkframe ARGS` through click's CliRunner (stdout and stderr kept apart)."""
    result = CliRunner().invoke(cli, list(args), env={"SINKFRAME_DATABASE_URL": None, **(env or {})})
    if pause:
        time.sleep(pause)  # the embedded engine frees its one connection slot a moment later
    return result
