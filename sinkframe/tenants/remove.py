"""`sinkframe tenants remove`: a tenant stops being one; its data stays unless asked to go.

Without `drop_data` the tenant is unregistered and its role loses LOGIN, but its
schema, its rows and its grants stay: `tenants add NAME` later brings it back as
it was. With `drop_data` the schema goes (DROP SCHEMA ... CASCADE: tables,
hypertables with their chunks and policies, continuous aggregates) and the role
too. Either way the role's open sessions are ended, after the change is
committed, so that a dashboard still connected stops reading.

A running sink needs no telling: each routed batch locks its tenants' registry
rows (pipeline/write/registrycheck.py), so the DELETE of the row here waits for the
batches in flight, and every batch after the commit dead-letters the tenant's
messages at stage `route`. The DELETE comes first in the transaction, before
the DROP SCHEMA, so the schema is never dropped under a write.
"""
from __future__ import annotations

import logging
import time

import psycopg
from psycopg import sql

from sinkframe.errors import ConfigError, SchemaError
from sinkframe.schema.introspect import execute
from sinkframe.tenants.access import Action, run_actions
from sinkframe.tenants.provision import read_tenant_state, schema_lock
from sinkframe.tenants.registry import DELETE, REGISTRY, REGISTRY_SCHEMA, REGISTRY_TABLE, Tenant, load_tenants

log = logging.getLogger(__name__)

# DROP SCHEMA can race the scheduler running one of the schema's jobs (see _raced_a_job).
DROP_ATTEMPTS = 5
_SESSIONS = sql.SQL("SELECT count(*) FROM pg_stat_activity WHERE usename = %s AND pid <> pg_backend_pid()")
_TERMINATE = sql.SQL("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE usename = {} AND pid <> pg_backend_pid()")


def plan_removal(conn: psycopg.Connection, name: str, *, drop_data: bool = False) -> list[Action]:
    """What `remove` would do, in order. ConfigError when there is nothing of that tenant to remove."""
    changes, end_sessions = _removal(conn, name, drop_data=drop_data)
    return changes + end_sessions


def remove_tenant(conn: psycopg.Connection, name: str, *, drop_data: bool = False) -> list[Action]:
    """Remove tenant `name` (see the module's docstring); returns what was done."""
    with schema_lock(conn):
        for attempt in range(1, DROP_ATTEMPTS + 1):
            changes, end_sessions = _removal(conn, name, drop_data=drop_data)
            try:
                run_actions(conn, changes)
                break
            except SchemaError as err:
                if attempt == DROP_ATTEMPTS or not _raced_a_job(err):
                    raise
                log.info("removing tenant %s raced a TimescaleDB job of its schema; trying again", name)
                time.sleep(0.2 * attempt)
        # After the commit: before it, a new login would still be let in.
        run_actions(conn, end_sessions)
    return changes + end_sessions


def _raced_a_job(err: SchemaError) -> bool:
    """DROP SCHEMA ... CASCADE met a policy job of that schema that the server's scheduler was running.

    TimescaleDB reports it as an internal error (XX000, "tuple concurrently
    deleted"); the transaction rolled back whole, so doing it again is safe.
    """
    cause = err.__cause__
    return isinstance(cause, psycopg.Error) and cause.sqlstate == "XX000"


def _removal(conn, name: str, *, drop_data: bool) -> tuple[list[Action], list[Action]]:
    tenant = Tenant(name)
    try:
        live = read_tenant_state(conn, tenant)
        leftovers = live.schema or live.can_login is not None
        if live.recorded is None and not (drop_data and leftovers):
            if leftovers:
                raise ConfigError(f"tenant {name} is not registered; its schema or role is left from an earlier "
                                  "remove that kept the data: add --drop-data to drop them")
            known = ", ".join(t.name for t in load_tenants(conn)) if live.registry else ""
            raise ConfigError(f"no tenant named {name} (registered: {known or 'none'})")
        schema, role = sql.Identifier(tenant.schema), sql.Identifier(tenant.role)
        actions = []
        if live.recorded is not None:
            actions.append(Action(f"unregister tenant {name} from {REGISTRY_SCHEMA}.{REGISTRY_TABLE}",
                                  DELETE.format(REGISTRY, sql.Placeholder()), params=[name],
                                  shown=DELETE.format(REGISTRY, sql.Literal(name))))
        if drop_data and live.schema:
            actions.append(Action(f"drop schema {tenant.schema} and everything in it",
                                  sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(schema)))
        if drop_data and live.can_login is not None:
            actions.append(Action(f"drop role {tenant.role}", sql.SQL("DROP ROLE IF EXISTS {}").format(role)))
        elif live.can_login:
            actions.append(Action(f"take LOGIN from role {tenant.role} (its grants stay for a later add)",
                                  sql.SQL("ALTER ROLE {} NOLOGIN").format(role)))
        end_sessions = []
        if live.can_login is not None and execute(conn, _SESSIONS, [tenant.role]).fetchone()[0]:
            end_sessions.append(Action(f"end the open sessions of {tenant.role}",
                                       _TERMINATE.format(sql.Placeholder()), params=[tenant.role],
                                       shown=_TERMINATE.format(sql.Literal(tenant.role))))
    except psycopg.Error as err:
        raise SchemaError(f"planning the removal of tenant {name}: {str(err).strip()}") from err
    return actions, end_sessions
