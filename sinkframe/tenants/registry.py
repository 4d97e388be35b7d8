"""Tenant names and the registry of tenants (the table `public.sinkframe_tenants`).

A tenant NAME owns a schema `tenant_NAME` (its copy of every object of the specs)
and a role `tenant_NAME` that can read that schema and nothing else. Because the
name becomes part of two identifiers, it is held to a plain identifier:
`[a-z][a-z0-9_]{0,40}`. Every identifier is still composed with `sql.Identifier`;
the pattern is there so that a name means the same thing in a message, a shell
and a catalog (no case folding, no quoting), and so that `tenant_` plus the name
stays far below PostgreSQL's 63-byte identifier limit.

The registry is what a routed batch's write checks, in its own transaction
(pipeline/write/registrycheck.py): a tenant exists for the pipeline once `sinkframe
tenants add` has recorded it, which it does last, after the schema, the role and
the grants are in place.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import sql

from sinkframe.errors import ConfigError

log = logging.getLogger(__name__)

NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,40}")  # used with fullmatch: no "$"-before-newline gap
MAX_NAME_LENGTH = 41
PREFIX = "tenant_"
REGISTRY_SCHEMA = "public"
REGISTRY_TABLE = "sinkframe_tenants"
REGISTRY = sql.Identifier(REGISTRY_SCHEMA, REGISTRY_TABLE)

CREATE_REGISTRY_TABLE = sql.SQL(
    "CREATE TABLE IF NOT EXISTS {} (\n"
    "    name text PRIMARY KEY,\n"
    "    schema_name text NOT NULL UNIQUE,\n"
    "    role_name text NOT NULL UNIQUE,\n"
    "    retention text,\n"
    "    created_at timestamptz NOT NULL DEFAULT now()\n"
    ")").format(REGISTRY)
_EXISTS = sql.SQL("SELECT to_regclass(%s::text) IS NOT NULL")
_SELECT = sql.SQL("SELECT name, schema_name, role_name, retention, created_at FROM {} ORDER BY name").format(REGISTRY)
# {} are filled with placeholders to run it and with literals to show it in a plan.
UPSERT = sql.SQL(
    "INSERT INTO {} (name, schema_name, role_name, retention) VALUES ({}, {}, {}, {})\n"
    "ON CONFLICT (name) DO UPDATE SET retention = EXCLUDED.retention")
DELETE = sql.SQL("DELETE FROM {} WHERE name = {}")


@dataclass(frozen=True)
class Tenant:
    """A tenant as the registry records it (retention None: each hypertable keeps the spec's)."""

    name: str
    retention: str | None = None
    created_at: datetime | None = None

    def __post_init__(self) -> None:
        check_name(self.name)

    @property
    def schema(self) -> str:
        return schema_for(self.name)

    @property
    def role(self) -> str:
        return role_for(self.name)


def is_tenant_name(name: object) -> bool:
    return isinstance(name, str) and NAME_PATTERN.fullmatch(name) is not None


def check_name(name: object) -> str:
    """`name` if it is a valid tenant name; ConfigError saying what a name may be otherwise."""
    if not is_tenant_name(name):
        raise ConfigError(
            f"tenant name {name!r} is not allowed: a tenant name is 1 to {MAX_NAME_LENGTH} lowercase letters, "
            "digits and underscores, starting with a letter (it names the schema and the role "
            f"{PREFIX}NAME); nothing was done")
    return name


def schema_for(name: str) -> str:
    """The schema holding tenant `name`'s tables."""
    return PREFIX + check_name(name)


def role_for(name: str) -> str:
    """The login role of tenant `name` (the same text as its schema: its `$user` search path finds it)."""
    return PREFIX + check_name(name)


def registry_exists(conn: psycopg.Connection) -> bool:
    # to_regclass answers NULL for a missing table where a SELECT would fail and
    # abort the caller's transaction.
    name = f"{REGISTRY_SCHEMA}.{REGISTRY_TABLE}"
    return conn.execute(_EXISTS, [name], prepare=False).fetchone()[0]


def load_tenants(conn: psycopg.Connection) -> list[Tenant]:
    """Every registered tenant, by name; none when no tenant was ever added."""
    if not registry_exists(conn):
        return []
    tenants = []
    # The schema and role come from the name, not from the row's columns: what a row
    # is written to is decided here, by the same rule that created it.
    for name, _schema, _role, retention, created_at in conn.execute(_SELECT, prepare=False):
        if not is_tenant_name(name):
            log.warning("ignoring tenant %r in %s.%s: not a valid tenant name (added by hand?)",
                        name, REGISTRY_SCHEMA, REGISTRY_TABLE)
            continue
        tenants.append(Tenant(name, retention, created_at))
    return tenants


def known_tenants(conn: psycopg.Connection) -> dict[str, str]:
    """Registered tenant name -> its schema: what the router may send rows to."""
    return {tenant.name: tenant.schema for tenant in load_tenants(conn)}


def find_tenant(conn: psycopg.Connection, name: str) -> Tenant | None:
    return next((t for t in load_tenants(conn) if t.name == name), None)
