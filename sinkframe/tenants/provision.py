"""Provision a tenant: its schema holding every object of the specs, its role, its grants, its registry row.

The spec's objects are planned and applied by the schema module itself, with the
connection's search_path set to the tenant's schema (then the schema holding
TimescaleDB's functions). That is enough because the schema module reads only
`current_schema()` and names objects unqualified, and an unqualified CREATE
goes to the first schema of the path, an unqualified reference finds the
tenant's object before anything in public. Two ways an object could still land
in public are closed here:
- a schema in the path that does not exist is skipped, which would make public
  the current schema: `tenant_search_path` checks current_schema() and refuses;
- CREATE EXTENSION installs into the first schema of the path: the extension is
  created here, in public, before the path changes (and the planner's own
  CREATE EXTENSION step is dropped from a tenant's plan).

Order: extension, registry table, schema, role, then the objects, then grants,
and the registry row last. The router only sees a tenant once it is recorded,
so it never writes to a tenant that is half made. All of it runs under the
schema module's advisory lock, so a `tenants add` and a `schema apply` (or two
adds) do not interleave.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Iterator

import psycopg
from psycopg import sql

from sinkframe.errors import ConfigError, SchemaError
from sinkframe.schema import ddl
from sinkframe.schema.apply import ADVISORY_LOCK_KEY, apply_schema
from sinkframe.schema.introspect import EXTENSION, execute
from sinkframe.schema.planner import Plan, plan_schema, select_objects
from sinkframe.schema.spec import SchemaSpec, parse_duration
from sinkframe.tenants.access import Action, access_actions, isolation_findings, role_actions, run_actions
from sinkframe.tenants.registry import (
    CREATE_REGISTRY_TABLE, REGISTRY, REGISTRY_SCHEMA, REGISTRY_TABLE, UPSERT, Tenant, find_tenant,
)

RETENTION_FROM_SPEC = "spec"  # `--retention spec`: back to each hypertable's drop_after in the specs


@dataclass
class TenantPlan:
    """What provisioning a tenant does (or did): actions around the schema module's plan of its objects."""

    tenant: Tenant
    before: list[Action] = field(default_factory=list)
    objects: Plan = field(default_factory=Plan)
    after: list[Action] = field(default_factory=list)
    functions_schema: str | None = None  # the second schema of the search path, for the printed script
    findings: list[str] = field(default_factory=list)  # isolation problems (see access.isolation_findings)

    @property
    def step_count(self) -> int:
        return len(self.before) + len(self.objects.steps) + len(self.after)

    @property
    def empty(self) -> bool:
        return self.step_count == 0

    def descriptions(self) -> list[str]:
        return ([a.description for a in self.before] + [s.description for s in self.objects.steps]
                + [a.description for a in self.after])

    def as_text(self, conn: psycopg.Connection | None = None) -> str:
        """A script psql could run: the objects part sets the search path it was planned with."""
        parts = [a.as_text(conn) for a in self.before]
        if self.objects.steps:
            parts.append(f"-- the objects of the specs, in schema {self.tenant.schema}: "
                         f"unqualified names below resolve there\n"
                         f"{search_path_statement(self.tenant.schema, self.functions_schema).as_string(conn)};\n")
            parts.append(self.objects.as_text(conn))
            parts.append("SET search_path TO DEFAULT;\n")
        parts += [a.as_text(conn) for a in self.after]
        return "\n".join(parts)


@dataclass(frozen=True)
class TenantState:
    """What exists of a tenant, and of what provisioning it needs."""

    registry: bool
    recorded: Tenant | None
    schema: bool
    can_login: bool | None  # None: no such role
    extension_schema: str | None  # where timescaledb is installed; None: not installed
    extension_available: bool


_LIVE = sql.SQL(
    "SELECT to_regclass(%(registry)s::text) IS NOT NULL, "
    "EXISTS (SELECT FROM pg_namespace WHERE nspname = %(schema)s), "
    "(SELECT rolcanlogin FROM pg_roles WHERE rolname = %(role)s), "
    "(SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
    " WHERE e.extname = %(extension)s), "
    "EXISTS (SELECT FROM pg_available_extensions WHERE name = %(extension)s)")


def read_tenant_state(conn: psycopg.Connection, tenant: Tenant) -> TenantState:
    registry, schema, can_login, extension_schema, available = execute(conn, _LIVE, {
        "registry": f"{REGISTRY_SCHEMA}.{REGISTRY_TABLE}", "schema": tenant.schema, "role": tenant.role,
        "extension": EXTENSION}).fetchone()
    recorded = find_tenant(conn, tenant.name) if registry else None
    return TenantState(registry, recorded, schema, can_login, extension_schema, available)


# --- the search path -------------------------------------------------------------------------

def search_path_statement(schema: str, functions_schema: str | None) -> sql.Composable:
    path = [sql.Identifier(schema)]
    if functions_schema and functions_schema != schema:
        path.append(sql.Identifier(functions_schema))
    return sql.SQL("SET search_path TO {}").format(sql.SQL(", ").join(path))


@contextmanager
def tenant_search_path(conn: psycopg.Connection, schema: str, functions_schema: str | None) -> Iterator[None]:
    """Unqualified names resolve in `schema` (then `functions_schema`) inside the block; restored after.

    Restored by value, not by RESET: on the embedded engine every connection shares
    one session, so the path must come back exactly as it was.
    """
    previous = execute(conn, sql.SQL("SELECT current_setting('search_path')")).fetchone()[0]
    execute(conn, search_path_statement(schema, functions_schema))
    try:
        current = execute(conn, sql.SQL("SELECT current_schema()")).fetchone()[0]
        if current != schema:
            raise SchemaError(f"schema {schema} does not exist, so its objects would go to "
                              f"{current or 'no schema'}; nothing was created. `sinkframe tenants add` "
                              "creates the schema")
        yield
    finally:
        status = conn.info.transaction_status
        if not conn.closed and status in (psycopg.pq.TransactionStatus.IDLE, psycopg.pq.TransactionStatus.INTRANS):
            execute(conn, sql.SQL("SELECT set_config('search_path', %s, false)"), [previous])


# --- retention -------------------------------------------------------------------------------

def resolve_retention(requested: str | None, recorded: Tenant | None) -> str | None:
    """None: keep what is recorded (a second add changes nothing); `spec`: the spec's; else the text."""
    if requested is None:
        return recorded.retention if recorded else None
    requested = requested.strip()
    return None if requested.lower() == RETENTION_FROM_SPEC else requested


def check_retention(conn: psycopg.Connection, spec: SchemaSpec, retention: str | None) -> None:
    """The server reads it as a positive interval, and no continuous aggregate refreshes past it."""
    if retention is None:
        return
    try:
        with conn.transaction():
            value = execute(conn, sql.SQL("SELECT %s::interval"), [retention]).fetchone()[0]
    except psycopg.DataError as err:
        raise ConfigError(f"--retention {retention!r}: not an interval PostgreSQL reads "
                          f"({str(err).strip()}); e.g. '90 days'") from None
    if value <= timedelta(0):
        raise ConfigError(f"--retention {retention!r}: must be longer than zero")
    problems = []
    for cagg in spec.continuous_aggregates.values():
        if cagg.refresh is None:
            continue
        start = parse_duration(cagg.refresh.start_offset)
        if start is None or start > value:
            problems.append(
                f"--retention {retention!r}: continuous aggregate {cagg.name} refreshes from "
                f"{cagg.refresh.start_offset or 'the beginning'} ago; refreshing a region whose raw data was "
                f"dropped deletes its aggregated rows: use a retention longer than that")
    if problems:
        raise ConfigError(problems[0], problems)


def spec_for_tenant(spec: SchemaSpec, retention: str | None) -> SchemaSpec:
    """The specs with every hypertable's drop_after set to the tenant's retention (when it has one).

    Every hypertable, not only those with a retention in the specs: a tenant's
    retention is about all of its raw data. Continuous aggregates keep the spec's.
    """
    if retention is None:
        return spec
    tables = {name: replace(t, hypertable=replace(t.hypertable, drop_after=retention)) if t.hypertable else t
              for name, t in spec.tables.items()}
    return replace(spec, tables=tables)


# --- planning --------------------------------------------------------------------------------

def _needs_extension(spec: SchemaSpec, live: TenantState, plain_postgres: bool) -> bool:
    """As the planner decides it: create it when it is available and TimescaleDB objects are asked for."""
    needs_timescale = bool(spec.continuous_aggregates) or any(t.hypertable for t in spec.tables.values())
    return live.extension_schema is None and live.extension_available and needs_timescale and not plain_postgres


def _functions_schema(live: TenantState, creating_extension: bool) -> str | None:
    if live.extension_schema:
        return live.extension_schema
    return REGISTRY_SCHEMA if creating_extension else None


def _before_actions(conn, spec: SchemaSpec, tenant: Tenant, live: TenantState, *, plain_postgres: bool,
                    password: str | None, password_from: str | None) -> list[Action]:
    actions = []
    if _needs_extension(spec, live, plain_postgres):
        actions.append(Action(f"create the timescaledb extension in {REGISTRY_SCHEMA}",
                              sql.SQL("CREATE EXTENSION IF NOT EXISTS timescaledb SCHEMA {}").format(
                                  sql.Identifier(REGISTRY_SCHEMA))))
    if not live.registry:
        actions.append(Action(f"create the tenant registry {REGISTRY_SCHEMA}.{REGISTRY_TABLE}",
                              CREATE_REGISTRY_TABLE))
    if not live.schema:
        actions.append(Action(f"create schema {tenant.schema}",
                              sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(tenant.schema))))
    actions += role_actions(conn, tenant, live.can_login, password=password, password_from=password_from)
    return actions


def _record_actions(tenant: Tenant, live: TenantState) -> list[Action]:
    if live.recorded is not None and live.recorded.retention == tenant.retention:
        return []
    values = (tenant.name, tenant.schema, tenant.role, tenant.retention)
    return [Action(f"record tenant {tenant.name} in {REGISTRY_SCHEMA}.{REGISTRY_TABLE} "
                   f"(retention {tenant.retention or 'from the specs'})",
                   UPSERT.format(REGISTRY, *[sql.Placeholder()] * len(values)), params=values,
                   shown=UPSERT.format(REGISTRY, *map(sql.Literal, values)))]


def _plan_objects(conn, spec: SchemaSpec, tenant: Tenant, functions_schema: str | None, *, exists: bool,
                  tables: set[str] | None, plain_postgres: bool, drop_extension_step: bool) -> Plan:
    tenant_spec = spec_for_tenant(spec, tenant.retention)
    if exists:
        with tenant_search_path(conn, tenant.schema, functions_schema):
            plan = plan_schema(conn, tenant_spec, tables=tables, plain_postgres=plain_postgres)
    else:
        # Plan against the empty schema it will be: made in a transaction that is rolled back.
        with conn.transaction(force_rollback=True):
            execute(conn, sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(tenant.schema)))
            with tenant_search_path(conn, tenant.schema, functions_schema):
                plan = plan_schema(conn, tenant_spec, tables=tables, plain_postgres=plain_postgres)
    if drop_extension_step:
        plan.steps = [s for s in plan.steps if s.sql != ddl.create_extension()]
    return plan


def plan_tenant(conn: psycopg.Connection, spec: SchemaSpec, name: str, *, retention: str | None = None,
                plain_postgres: bool = False, password: str | None = None,
                password_from: str | None = None) -> TenantPlan:
    """What `tenants add` would do. Reads only (a new schema is planned in a rolled-back transaction)."""
    tenant = Tenant(name)
    try:
        live = read_tenant_state(conn, tenant)
        tenant = Tenant(name, resolve_retention(retention, live.recorded))
        check_retention(conn, spec, tenant.retention)
        before = _before_actions(conn, spec, tenant, live, plain_postgres=plain_postgres, password=password,
                                 password_from=password_from)
        creating_extension = _needs_extension(spec, live, plain_postgres)
        functions_schema = _functions_schema(live, creating_extension)
        objects = _plan_objects(conn, spec, tenant, functions_schema, exists=live.schema, tables=None,
                                plain_postgres=plain_postgres, drop_extension_step=creating_extension)
        exists = live.schema and live.can_login is not None
        after = access_actions(conn, tenant, exists=exists, objects_changed=bool(objects.steps))
        after += _record_actions(tenant, live)
        findings = isolation_findings(conn, tenant) if live.can_login is not None else []
    except psycopg.Error as err:
        raise SchemaError(f"planning tenant {name}: {str(err).strip()}") from err
    return TenantPlan(tenant, before, objects, after, functions_schema, findings)


# --- applying --------------------------------------------------------------------------------

@contextmanager
def schema_lock(conn: psycopg.Connection) -> Iterator[None]:
    """The schema module's advisory lock, held across every phase (apply_schema takes it again: it stacks)."""
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise SchemaError("provisioning a tenant needs a connection outside a transaction")
    autocommit = conn.autocommit
    conn.autocommit = True
    try:
        try:
            execute(conn, sql.SQL("SELECT pg_advisory_lock(%s)"), [ADVISORY_LOCK_KEY])
        except psycopg.Error as err:
            raise SchemaError(f"taking the schema lock (pg_advisory_lock): {str(err).strip()}") from err
        try:
            yield
        finally:
            if not conn.closed and not conn.broken:
                execute(conn, sql.SQL("SELECT pg_advisory_unlock(%s)"), [ADVISORY_LOCK_KEY])
    finally:
        if not conn.closed:
            conn.autocommit = autocommit


def apply_tenant(conn: psycopg.Connection, spec: SchemaSpec, name: str, *, retention: str | None = None,
                 plain_postgres: bool = False, password: str | None = None,
                 password_from: str | None = None) -> TenantPlan:
    """Create or bring up to date tenant `name`; a second run does nothing. Returns what was done.

    It plans first, so that whatever would make it fail half way and is known
    beforehand (a retention the server does not read, no TimescaleDB without the
    plain-PostgreSQL opt-in) fails with nothing created.
    """
    with schema_lock(conn):
        planned = plan_tenant(conn, spec, name, retention=retention, plain_postgres=plain_postgres,
                              password=password, password_from=password_from)
        tenant = planned.tenant
        try:
            run_actions(conn, planned.before)
            with tenant_search_path(conn, tenant.schema, planned.functions_schema):
                objects = apply_schema(conn, spec_for_tenant(spec, tenant.retention), plain_postgres=plain_postgres)
            after = access_actions(conn, tenant, exists=True, objects_changed=bool(objects.steps))
            after += _record_actions(tenant, read_tenant_state(conn, tenant))
            run_actions(conn, after)
            findings = isolation_findings(conn, tenant)
        except psycopg.Error as err:
            raise SchemaError(f"provisioning tenant {name}: {str(err).strip()}") from err
    return TenantPlan(tenant, planned.before, objects, after, planned.functions_schema, findings)


# --- keeping registered tenants in step with the specs (`sinkframe schema plan|apply`) ----------

def _existing(conn, tenant: Tenant) -> TenantState:
    live = read_tenant_state(conn, tenant)
    if not live.schema or live.can_login is None:
        missing = f"schema {tenant.schema}" if not live.schema else f"role {tenant.role}"
        raise SchemaError(f"tenant {tenant.name} is registered but its {missing} does not exist (dropped by "
                          f"hand?): `sinkframe tenants add {tenant.name}` recreates it, `sinkframe tenants remove "
                          f"{tenant.name} --yes` unregisters it")
    return live


def plan_tenant_objects(conn: psycopg.Connection, spec: SchemaSpec, tenant: Tenant, *,
                        tables: set[str] | None = None, plain_postgres: bool = False) -> TenantPlan:
    """A registered tenant's objects and grants against the specs (its role and registry row are left alone)."""
    try:
        live = _existing(conn, tenant)
        functions_schema = _functions_schema(live, False)
        objects = _plan_objects(conn, spec, tenant, functions_schema, exists=True, tables=tables,
                                plain_postgres=plain_postgres, drop_extension_step=False)
        after = access_actions(conn, tenant, exists=True, objects_changed=bool(objects.steps))
    except psycopg.Error as err:
        raise SchemaError(f"planning tenant {tenant.name}: {str(err).strip()}") from err
    return TenantPlan(tenant, [], objects, after, functions_schema)


def apply_tenant_objects(conn: psycopg.Connection, spec: SchemaSpec, tenant: Tenant, *,
                         tables: set[str] | None = None, plain_postgres: bool = False) -> TenantPlan:
    select_objects(spec, tables)  # an unknown --table fails before anything runs
    try:
        with schema_lock(conn):
            live = _existing(conn, tenant)
            functions_schema = _functions_schema(live, False)
            with tenant_search_path(conn, tenant.schema, functions_schema):
                objects = apply_schema(conn, spec_for_tenant(spec, tenant.retention), tables=tables,
                                       plain_postgres=plain_postgres)
            after = access_actions(conn, tenant, exists=True, objects_changed=bool(objects.steps))
            run_actions(conn, after)
    except psycopg.Error as err:
        raise SchemaError(f"applying the schema to tenant {tenant.name}: {str(err).strip()}") from err
    return TenantPlan(tenant, [], objects, after, functions_schema)
