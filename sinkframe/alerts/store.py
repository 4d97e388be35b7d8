"""Alert transitions and rule states in the database, inside the batch's own transaction.

`sinkframe_alerts` holds one row per transition (firing, resolved);
`sinkframe_alert_states` the current state of each (connector, rule, key). The
writer calls `load_states` and `save` on the cursor of the transaction that
writes the batch's rows and advances its offsets, so a transition commits
exactly once with the rows that caused it: a batch re-read after a crash or by
a partition's new owner finds the states the last commit left and makes the
same transitions again only if they were never committed.

A routed connector's states and transitions are stored under `connector/tenant`
(a connector name holds no `/`): reading a connector's (`current_states`,
`recent_transitions`) includes its tenants'.

Retention (`SINKFRAME_ALERTS_RETENTION`, `apply_retention` at start, `prune` with
a batch): on TimescaleDB `sinkframe_alerts` is a hypertable on `created_at` with
a retention policy (TimescaleDB's own job drops old chunks); on plain PostgreSQL
the sink deletes transitions older than the retention. On both, the sink deletes
states that are `ok` (resolved, or never fired) and unchanged for longer than
the retention: a missing state means ok, so nothing a rule needs is lost.

Driver errors are not wrapped here: they reach the writer, which sorts them by
SQLSTATE into retriable and fatal as it does for the rows (pipeline/write/dberrors.py).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, Mapping, Sequence

import psycopg
from psycopg import sql
from psycopg.rows import class_row

from sinkframe.alerts.engine import AlertState, AlertStatus, Change, StateKey, Transition
from sinkframe.errors import SchemaError

log = logging.getLogger(__name__)

ALERTS_TABLE = "sinkframe_alerts"
STATES_TABLE = "sinkframe_alert_states"
_ALERTS, _STATES = sql.Identifier(ALERTS_TABLE), sql.Identifier(STATES_TABLE)


def _one_of(enum) -> sql.Composed:
    """`('firing', 'resolved')`: a CHECK list from an Enum, so the values are said once."""
    return sql.SQL("({})").format(sql.SQL(", ").join(sql.Literal(member.value) for member in enum))


# Transitions are appended, never updated; `id` orders them as they were committed.
CREATE_ALERTS_TABLE = sql.SQL("""
CREATE TABLE IF NOT EXISTS {table} (
    id bigserial PRIMARY KEY,
    connector text NOT NULL,
    alert text NOT NULL,
    alert_key text NOT NULL,
    state text NOT NULL CHECK (state IN {changes}),
    severity text NOT NULL,
    value text,
    event_time timestamptz,
    source_topic text NOT NULL,
    source_partition integer NOT NULL,
    source_offset bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
)""").format(table=_ALERTS, changes=_one_of(Change))

# "The latest transitions of this connector's alert": a backward scan of one index range.
CREATE_ALERTS_INDEX = sql.SQL(
    "CREATE INDEX IF NOT EXISTS {index} ON {table} (connector, alert, id DESC)"
).format(index=sql.Identifier(f"{ALERTS_TABLE}_latest_idx"), table=_ALERTS)

CREATE_STATES_TABLE = sql.SQL("""
CREATE TABLE IF NOT EXISTS {table} (
    connector text NOT NULL,
    alert text NOT NULL,
    alert_key text NOT NULL,
    state text NOT NULL CHECK (state IN {statuses}),
    since timestamptz,
    value text,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (connector, alert, alert_key)
)""").format(table=_STATES, statuses=_one_of(AlertStatus))

# In the order to run them; each is idempotent (a `schema plan` can list them as they are).
ALERT_DDL: tuple[sql.Composed, ...] = (CREATE_ALERTS_TABLE, CREATE_ALERTS_INDEX, CREATE_STATES_TABLE)

_LOAD = sql.SQL(
    "SELECT alert, alert_key, state, since, value FROM {table} "
    "WHERE connector = %s AND alert = ANY(%s::text[]) AND alert_key = ANY(%s::text[])"
).format(table=_STATES)

# One statement per batch whatever its size: the transitions as arrays, unnested
# in order, so `id` follows the order the engine found them in.
_INSERT_TRANSITIONS = sql.SQL(
    "INSERT INTO {table} (connector, alert, alert_key, state, severity, value, event_time, "
    "source_topic, source_partition, source_offset) "
    "SELECT %s, alert, alert_key, state, severity, value, event_time, source_topic, source_partition, "
    "source_offset FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], "
    "%s::timestamptz[], %s::text[], %s::integer[], %s::bigint[]) WITH ORDINALITY "
    "AS t(alert, alert_key, state, severity, value, event_time, source_topic, source_partition, "
    "source_offset, position) ORDER BY position"
).format(table=_ALERTS)

_UPSERT_STATES = sql.SQL(
    "INSERT INTO {table} (connector, alert, alert_key, state, since, value) "
    "SELECT %s, alert, alert_key, state, since, value "
    "FROM unnest(%s::text[], %s::text[], %s::text[], %s::timestamptz[], %s::text[]) "
    "AS s(alert, alert_key, state, since, value) "
    "ON CONFLICT (connector, alert, alert_key) DO UPDATE SET state = EXCLUDED.state, "
    "since = EXCLUDED.since, value = EXCLUDED.value, updated_at = now()"
).format(table=_STATES)


def create_alert_tables(cur) -> None:
    """Create both tables and the index if missing (a cursor or a connection)."""
    for statement in ALERT_DDL:
        cur.execute(statement)


# -- retention ------------------------------------------------------------------------------------

# Rows deleted per table and statement: a batch that prunes stays a batch. When a delete
# hits this, the next batch prunes again (see AlertRecorder).
PRUNE_LIMIT = 5_000
_TIME_INDEX = sql.SQL("CREATE INDEX IF NOT EXISTS {index} ON {table} (created_at)").format(
    index=sql.Identifier(f"{ALERTS_TABLE}_created_idx"), table=_ALERTS)
_HAS_TIMESCALEDB = sql.SQL("SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'timescaledb')")
# The alerts table as the search path finds it: (schema, table, is a hypertable, its primary key's columns).
_ALERTS_TABLE_STATE = sql.SQL(
    "SELECT n.nspname, c.relname, "
    "EXISTS (SELECT FROM timescaledb_information.hypertables h "
    "        WHERE h.hypertable_schema = n.nspname AND h.hypertable_name = c.relname), "
    "(SELECT con.conname FROM pg_constraint con WHERE con.conrelid = c.oid AND con.contype = 'p'), "
    "ARRAY(SELECT a.attname::text FROM pg_constraint con JOIN pg_attribute a "
    "      ON a.attrelid = con.conrelid AND a.attnum = ANY(con.conkey) "
    "      WHERE con.conrelid = c.oid AND con.contype = 'p') "
    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass(%s)")
_POLICY = sql.SQL(
    "SELECT (config->>'drop_after')::interval = %s::interval FROM timescaledb_information.jobs "
    "WHERE proc_name = 'policy_retention' AND hypertable_schema = %s AND hypertable_name = %s")


def apply_retention(conn, retention: str | None) -> bool:
    """Set up the retention of `sinkframe_alerts` (None: keep everything).

    Returns whether the sink must delete old transitions itself (plain
    PostgreSQL); on TimescaleDB the table becomes a hypertable on `created_at`
    (its primary key then includes `created_at`, as a hypertable requires) with
    a retention policy of `retention`, replaced when the setting changes.
    SchemaError when the server refuses (a role that may not alter the table).
    """
    try:
        return _apply_retention(conn, retention)
    except psycopg.Error as err:
        raise SchemaError(f"setting the retention of {ALERTS_TABLE} to {retention or 'off'} "
                          f"(SINKFRAME_ALERTS_RETENTION): {str(err).strip()}") from err


def _apply_retention(conn, retention: str | None) -> bool:
    if not conn.execute(_HAS_TIMESCALEDB).fetchone()[0]:
        if retention is not None:
            conn.execute(_TIME_INDEX)
        return retention is not None
    # Two sinks starting at once: one converts, the other finds it done.
    conn.execute(sql.SQL("SELECT pg_advisory_xact_lock(hashtext(%s))"), [f"{ALERTS_TABLE} retention"])
    schema, table, hypertable, pkey, key_columns = conn.execute(_ALERTS_TABLE_STATE, [ALERTS_TABLE]).fetchone()
    qualified = sql.Identifier(schema, table)
    name = f"{schema}.{table}"
    if retention is None:
        if hypertable:
            conn.execute(sql.SQL("SELECT remove_retention_policy(%s::regclass, if_exists => true)"), [name])
        return False
    if not hypertable:
        if pkey is not None and "created_at" not in key_columns:
            conn.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}, ADD PRIMARY KEY (id, created_at)").format(
                qualified, sql.Identifier(pkey)))
        conn.execute(sql.SQL("SELECT create_hypertable(%s::regclass, 'created_at', migrate_data => true, "
                             "if_not_exists => true)"), [name])
        log.info("alerts: %s is now a hypertable on created_at (for its retention)", name)
    same = conn.execute(_POLICY, [retention, schema, table]).fetchone()
    if same is None or not same[0]:
        conn.execute(sql.SQL("SELECT remove_retention_policy(%s::regclass, if_exists => true)"), [name])
        conn.execute(sql.SQL("SELECT add_retention_policy(%s::regclass, %s::interval)"), [name, retention])
        log.info("alerts: transitions in %s are dropped after %s", name, retention)
    return False


_PRUNE_TRANSITIONS = sql.SQL(
    "DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE created_at < now() - %s::interval "
    "LIMIT %s FOR UPDATE SKIP LOCKED)").format(table=_ALERTS)
# SKIP LOCKED: a state a writer holds is left for the next prune, never waited for.
_PRUNE_STATES = sql.SQL(
    "DELETE FROM {table} WHERE (connector, alert, alert_key) IN (SELECT connector, alert, alert_key FROM {table} "
    "WHERE state = %s AND updated_at < now() - %s::interval LIMIT %s FOR UPDATE SKIP LOCKED)").format(table=_STATES)


def prune(cur, retention: str, *, transitions: bool) -> int:
    """Delete ok states (and, with `transitions`, transitions) older than `retention`: at most
    PRUNE_LIMIT rows of each table. Returns the most rows deleted from one table."""
    cur.execute(_PRUNE_STATES, (AlertStatus.OK.value, retention, PRUNE_LIMIT))
    deleted = cur.rowcount
    if transitions:
        cur.execute(_PRUNE_TRANSITIONS, (retention, PRUNE_LIMIT))
        deleted = max(deleted, cur.rowcount)
    return deleted


def load_states(cur, connector: str, rule_names: Iterable[str], keys: Iterable[str]) -> dict[StateKey, AlertState]:
    """The stored states of these rules for these keys, in one query; a pair not stored is ok."""
    rule_names, keys = sorted(set(rule_names)), sorted(set(keys))
    if not rule_names or not keys:
        return {}
    cur.execute(_LOAD, (connector, rule_names, keys))
    return {(alert, key): AlertState(AlertStatus(state), since, value)
            for alert, key, state, since, value in cur.fetchall()}


def save(cur, connector: str, transitions: Sequence[Transition], states: Mapping[StateKey, AlertState],
         changed_keys: Iterable[StateKey]) -> None:
    """Insert the transitions and upsert the changed states: at most two statements."""
    if transitions:
        cur.execute(_INSERT_TRANSITIONS, (connector, *_transition_columns(transitions)))
    # Sorted: two writers that touch the same keys lock them in the same order.
    changed = sorted(changed_keys)
    if changed:
        chosen = [states[key] for key in changed]
        cur.execute(_UPSERT_STATES, (
            connector, [alert for alert, _ in changed], [key for _, key in changed],
            [state.status.value for state in chosen], [state.since for state in chosen],
            [state.value for state in chosen]))


def _transition_columns(transitions: Sequence[Transition]) -> tuple[list, ...]:
    return (
        [t.alert for t in transitions], [t.alert_key for t in transitions],
        [t.state.value for t in transitions], [t.severity for t in transitions],
        [t.value for t in transitions], [t.event_time for t in transitions],
        [t.source_topic for t in transitions], [t.source_partition for t in transitions],
        [t.source_offset for t in transitions],
    )


# -- reading, for the `alerts` command and status ---------------------------------------------

@dataclass(frozen=True, slots=True)
class StoredState:
    connector: str
    alert: str
    alert_key: str
    state: str
    since: datetime | None
    value: str | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class StoredTransition:
    id: int
    connector: str
    alert: str
    alert_key: str
    state: str
    severity: str
    value: str | None
    event_time: datetime | None
    source_topic: str
    source_partition: int
    source_offset: int
    created_at: datetime


def _of_connector(connector: str) -> tuple[sql.Composable, list]:
    """Rows of `connector` and of its tenants (`connector/tenant`)."""
    return sql.SQL("(connector = %s OR starts_with(connector, %s))"), [connector, connector + "/"]


def tenant_of(stored_connector: str) -> str | None:
    """The tenant a stored connector name (`connector/tenant`) is of; None for a connector's own."""
    return stored_connector.partition("/")[2] or None


def current_states(conn, connector: str | None = None, *, firing_only: bool = False) -> list[StoredState]:
    """Stored states (all connectors unless `connector`, with its tenants'), by connector, alert and key;
    [] before any."""
    conditions = []
    params: list = []
    if connector is not None:
        condition, values = _of_connector(connector)
        conditions.append(condition)
        params.extend(values)
    if firing_only:
        conditions.append(sql.SQL("state = %s"))
        params.append(AlertStatus.FIRING.value)
    query = sql.SQL("SELECT {columns} FROM {table}{where} ORDER BY connector, alert, alert_key").format(
        columns=_columns(StoredState), table=_STATES, where=_where(conditions))
    return _select(conn, STATES_TABLE, StoredState, query, params)


def recent_transitions(conn, connector: str | None = None, *, limit: int = 50) -> list[StoredTransition]:
    """The latest `limit` transitions (all connectors unless `connector`, with its tenants'), newest first;
    [] before any."""
    conditions, params = ([], [])
    if connector is not None:
        condition, params = _of_connector(connector)
        conditions.append(condition)
    query = sql.SQL("SELECT {columns} FROM {table}{where} ORDER BY id DESC LIMIT %s").format(
        columns=_columns(StoredTransition), table=_ALERTS, where=_where(conditions))
    return _select(conn, ALERTS_TABLE, StoredTransition, query, [*params, limit])


def _columns(row_class) -> sql.Composed:
    return sql.SQL(", ").join(map(sql.Identifier, row_class.__dataclass_fields__))


def _where(conditions: list[sql.Composable]) -> sql.Composable:
    return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("")


def _select(conn, table: str, row_class, query: sql.Composable, params: Sequence) -> list:
    # A database no connector has alerted in yet has no tables: that is "no alerts", not an error,
    # and asking first keeps a failed SELECT from aborting the caller's transaction.
    if not conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()[0]:
        return []
    with conn.cursor(row_factory=class_row(row_class)) as cur:
        cur.execute(query, params)
        return cur.fetchall()
