"""`sinkframe tenants list`: each registered tenant, its schema, role, retention and rows per table."""
from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from sinkframe.errors import SchemaError
from sinkframe.schema.introspect import execute
from sinkframe.tenants.registry import Tenant, load_tenants

_STATE = sql.SQL(
    "SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = %(schema)s), "
    "(SELECT rolcanlogin FROM pg_roles WHERE rolname = %(role)s), "
    "ARRAY(SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "      WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'p') ORDER BY c.relname)")


@dataclass
class TenantStatus:
    tenant: Tenant
    schema_exists: bool
    login: bool | None  # None: the role does not exist
    rows: dict[str, int] = field(default_factory=dict)  # table -> exact row count

    def as_dict(self) -> dict:
        t = self.tenant
        return {"name": t.name, "schema": t.schema, "schema_exists": self.schema_exists, "role": t.role,
                "login": self.login, "retention": t.retention,
                "created_at": t.created_at.isoformat() if t.created_at else None, "rows": self.rows}


def tenant_statuses(conn: psycopg.Connection) -> list[TenantStatus]:
    """Every registered tenant with exact row counts (count(*): it reads every table, so it takes a while
    on big ones; the planner's estimates would be cheap but wrong right after a load)."""
    try:
        statuses = []
        for tenant in load_tenants(conn):
            exists, login, tables = execute(conn, _STATE, {"schema": tenant.schema, "role": tenant.role}).fetchone()
            rows = {table: execute(conn, sql.SQL("SELECT count(*) FROM {}").format(
                        sql.Identifier(tenant.schema, table))).fetchone()[0] for table in tables}
            statuses.append(TenantStatus(tenant, exists, login, rows))
    except psycopg.Error as err:
        raise SchemaError(f"reading the tenants: {str(err).strip()}") from err
    return statuses


def render_statuses(statuses: list[TenantStatus]) -> str:
    lines = []
    for status in statuses:
        t = status.tenant
        login = {None: "missing", True: "login", False: "no login"}[status.login]
        since = f", since {t.created_at:%Y-%m-%d %H:%M %Z}" if t.created_at else ""
        lines.append(f"{t.name}: schema {t.schema}{'' if status.schema_exists else ' (missing)'}, "
                     f"role {t.role} ({login}), retention {t.retention or 'from the specs'}{since}")
        width = max((len(name) for name in status.rows), default=0)
        lines += [f"  {name:<{width}}  {count:>12,} rows" for name, count in status.rows.items()]
    return "\n".join(lines) + ("\n" if lines else "")
