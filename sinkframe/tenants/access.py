"""A tenant's role and what it may read: its own schema, nothing else.

The model, all of it PostgreSQL's own privileges:
- the role `tenant_NAME` is created LOGIN and nothing more (no superuser, no
  CREATEDB/CREATEROLE, member of no role), so it holds only what is granted here;
- it gets USAGE on its schema and SELECT on every table, view and continuous
  aggregate there, now (`ON ALL TABLES IN SCHEMA`) and later (default privileges
  of the role that provisions, so a table a later `schema apply` adds is readable
  at once; apply grants again anyway, in case another role created it);
- it gets nothing on `public` (offsets, dead letters, alerts, the tenant registry)
  or on any other tenant's schema: a schema made by CREATE SCHEMA grants PUBLIC
  nothing, and tables grant PUBLIC nothing unless someone did it by hand, which
  `isolation_findings` reports.

A password, when given, is hashed by libpq on the client (SCRAM, the way psql's
`\\password` does it), so the cleartext never reaches the server, its statement
log or this process's logs; ALTER ROLE takes the hash as a literal (it takes no
parameters).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Sequence

import psycopg
from psycopg import sql

from sinkframe.errors import SchemaError
from sinkframe.schema.introspect import execute
from sinkframe.tenants.registry import PREFIX, REGISTRY_SCHEMA, Tenant

log = logging.getLogger(__name__)
HIDDEN_PASSWORD = sql.Literal("********")
READABLE_KINDS = ("r", "p", "v", "m", "f")  # tables, partitioned tables, views, materialized views, foreign


@dataclass(frozen=True)
class Action:
    """One statement of a tenant's provisioning. `shown` is what a printed plan says instead, for secrets."""

    description: str
    statement: sql.Composable = field(repr=False)
    params: Sequence | None = field(default=None, repr=False)
    shown: sql.Composable | None = field(default=None, repr=False)

    def as_text(self, conn: psycopg.Connection | None = None) -> str:
        return f"-- {self.description}\n{(self.shown or self.statement).as_string(conn)};\n"


def run_actions(conn: psycopg.Connection, actions: Sequence[Action]) -> None:
    """All in one transaction: a tenant is never left with a role but half its grants."""
    if not actions:
        return
    with conn.transaction():
        for action in actions:
            log.info("tenant step: %s", action.description)  # a description never holds a secret
            try:
                execute(conn, action.statement, action.params)
            except psycopg.Error as err:
                raise SchemaError(f"{action.description}: {str(err).strip()}") from err


def role_actions(conn: psycopg.Connection, tenant: Tenant, can_login: bool | None, *,
                 password: str | None, password_from: str | None) -> list[Action]:
    role = sql.Identifier(tenant.role)
    actions = []
    if can_login is None:
        actions.append(Action(f"create role {tenant.role} (LOGIN, no other attribute)",
                              sql.SQL("CREATE ROLE {} LOGIN").format(role)))
    elif not can_login:
        actions.append(Action(f"let role {tenant.role} log in again", sql.SQL("ALTER ROLE {} LOGIN").format(role)))
    if password is not None:
        hashed = _hash_password(conn, tenant.role, password)
        statement = sql.SQL("ALTER ROLE {} PASSWORD {}")
        actions.append(Action(f"set the password of role {tenant.role} (from ${password_from}, hashed)",
                              statement.format(role, sql.Literal(hashed)),
                              shown=statement.format(role, HIDDEN_PASSWORD)))
    return actions


def _hash_password(conn: psycopg.Connection, role: str, password: str) -> str:
    try:
        # algorithm None: the server's password_encryption (scram-sha-256 by default)
        return conn.pgconn.encrypt_password(password.encode(), role.encode(), None).decode()
    except psycopg.Error as err:
        raise SchemaError(f"hashing the password of role {role}: {str(err).strip()}") from None


_ACCESS_STATE = sql.SQL(
    "SELECT has_schema_privilege(%(role)s, n.oid, 'USAGE'), "
    "ARRAY(SELECT c.relname FROM pg_class c WHERE c.relnamespace = n.oid AND c.relkind::text = ANY(%(kinds)s) "
    "      AND NOT has_table_privilege(%(role)s, c.oid, 'SELECT') ORDER BY c.relname), "
    "EXISTS (SELECT FROM pg_default_acl d, aclexplode(d.defaclacl) a "
    "        WHERE d.defaclnamespace = n.oid "
    "        AND d.defaclrole = (SELECT oid FROM pg_roles WHERE rolname = current_user) "
    "        AND d.defaclobjtype = 'r' AND a.privilege_type = 'SELECT' "
    "        AND a.grantee = (SELECT oid FROM pg_roles WHERE rolname = %(role)s)) "
    "FROM pg_namespace n WHERE n.nspname = %(schema)s")


def access_actions(conn: psycopg.Connection, tenant: Tenant, *, exists: bool, objects_changed: bool) -> list[Action]:
    """The grants still missing. `exists`: both the schema and the role are there to ask about."""
    usage, unreadable, defaults = False, [], False
    if exists:
        row = execute(conn, _ACCESS_STATE, {"role": tenant.role, "schema": tenant.schema,
                                            "kinds": list(READABLE_KINDS)}).fetchone()
        if row:
            usage, unreadable, defaults = row
    schema, role = sql.Identifier(tenant.schema), sql.Identifier(tenant.role)
    actions = []
    if not usage:
        actions.append(Action(f"let {tenant.role} use schema {tenant.schema}",
                              sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema, role)))
    if objects_changed or unreadable or not exists:
        what = f" ({', '.join(unreadable)})" if unreadable and not objects_changed else ""
        actions.append(Action(f"let {tenant.role} read every table and view in {tenant.schema}{what}",
                              sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(schema, role)))
    if not defaults:
        actions.append(Action(f"let {tenant.role} read tables created in {tenant.schema} later",
                              sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT SELECT ON TABLES TO {}").format(
                                  schema, role)))
    return actions


_ROLE_ATTRIBUTES = sql.SQL(
    "SELECT r.rolsuper, r.rolbypassrls, r.rolcreaterole, r.rolcreatedb, "
    "ARRAY(SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
    "      WHERE m.member = r.oid ORDER BY g.rolname) "
    "FROM pg_roles r WHERE r.rolname = %(role)s")
_READABLE_ELSEWHERE = sql.SQL(
    "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE (n.nspname = %(public)s OR (n.nspname LIKE %(prefix)s AND n.nspname <> %(schema)s)) "
    "AND c.relkind::text = ANY(%(kinds)s) AND has_table_privilege(%(role)s, c.oid, 'SELECT') "
    "AND (n.nspname = %(public)s OR has_schema_privilege(%(role)s, n.oid, 'USAGE')) "
    "ORDER BY 1, 2")


def isolation_findings(conn: psycopg.Connection, tenant: Tenant) -> list[str]:
    """What the tenant's role can read beyond its own schema (empty when isolated), each with the fix."""
    params = {"role": tenant.role, "schema": tenant.schema, "public": REGISTRY_SCHEMA,
              "prefix": PREFIX.replace("_", r"\_") + "%", "kinds": list(READABLE_KINDS)}
    row = execute(conn, _ROLE_ATTRIBUTES, params).fetchone()
    if row is None:
        return []
    superuser, bypassrls, createrole, createdb, member_of = row
    findings = []
    for flag, attribute in ((superuser, "SUPERUSER"), (bypassrls, "BYPASSRLS"), (createrole, "CREATEROLE"),
                            (createdb, "CREATEDB")):
        if flag:
            findings.append(f"role {tenant.role} has {attribute}: ALTER ROLE {tenant.role} NO{attribute}")
    for group in member_of:
        findings.append(f"role {tenant.role} is a member of {group} and may read what it reads: "
                        f"REVOKE {group} FROM {tenant.role}")
    for schema, table in execute(conn, _READABLE_ELSEWHERE, params):
        findings.append(f"role {tenant.role} can read {schema}.{table} (granted to it or to PUBLIC): "
                        f"REVOKE SELECT ON {schema}.{table} FROM PUBLIC, {tenant.role}")
    return findings
