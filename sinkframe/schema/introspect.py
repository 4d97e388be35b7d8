"""Read what exists in the database: tables, columns, keys, indexes and TimescaleDB objects.

Only objects in the connection's `current_schema()` are read (that is where
unqualified names, as the connectors use them, resolve). Everything comes from
pg_catalog and, when the extension is installed, the `timescaledb_information`
views, so it works for any role that can connect.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Iterable

import psycopg
from psycopg import sql

from sinkframe.schema.spec import KeyColumn

EXTENSION = "timescaledb"
# timescaledb_information.jobs proc_name -> the kind of policy
POLICY_KINDS = {
    "policy_compression": "compression",
    "policy_retention": "retention",
    "policy_refresh_continuous_aggregate": "refresh",
}


@dataclass
class LiveColumn:
    name: str
    type: str  # as format_type() prints it
    nullable: bool
    default: str | None


@dataclass
class LiveIndex:
    name: str
    columns: tuple[KeyColumn | None, ...]  # None for an expression
    unique: bool


@dataclass
class LiveTable:
    name: str
    kind: str  # pg_class.relkind: r table, p partitioned table, v view, m materialized view
    columns: dict[str, LiveColumn] = field(default_factory=dict)
    constraints: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)  # name -> (p|u, cols)
    indexes: dict[str, LiveIndex] = field(default_factory=dict)
    comment: str | None = None

    @property
    def primary_key(self) -> tuple[str, tuple[str, ...]] | None:
        return next(((n, cols) for n, (kind, cols) in self.constraints.items() if kind == "p"), None)

    def has_unique(self, columns: Iterable[str]) -> bool:
        wanted = tuple(columns)
        return (any(cols == wanted for _kind, cols in self.constraints.values())
                or any(ix.unique and tuple(c.name if c else None for c in ix.columns) == wanted
                       for ix in self.indexes.values()))


@dataclass
class LiveHypertable:
    name: str
    time_column: str | None = None
    chunk_interval: timedelta | None = None
    partition_column: str | None = None
    number_partitions: int | None = None
    compression_enabled: bool = False
    segment_by: tuple[str, ...] = ()
    order_by: tuple[KeyColumn, ...] = ()


@dataclass
class LiveJob:
    job_id: int
    kind: str
    relation: str
    schedule_interval: timedelta | None
    config: dict[str, Any]


@dataclass
class LiveCagg:
    name: str
    source: str
    materialized_only: bool
    definition: str  # pg_get_viewdef() of the SELECT the aggregate was created from


@dataclass
class LiveState:
    schema: str
    extension_installed: bool
    extension_available: bool
    relations: dict[str, LiveTable] = field(default_factory=dict)
    hypertables: dict[str, LiveHypertable] = field(default_factory=dict)
    caggs: dict[str, LiveCagg] = field(default_factory=dict)
    jobs: dict[tuple[str, str], LiveJob] = field(default_factory=dict)  # (relation, kind) -> job


def execute(conn: psycopg.Connection, query: sql.Composable, params=None) -> psycopg.Cursor:
    """Run a query without server-side prepared statements.

    The embedded engine is one backend session shared by every connection, so a statement
    prepared by an earlier connection would still exist there under the same name.
    """
    return conn.execute(query, params, prepare=False)


def read_live_state(conn: psycopg.Connection, names: Iterable[str]) -> LiveState:
    """What exists of the named relations (and TimescaleDB objects attached to them)."""
    names = sorted(set(names))
    row = execute(conn, sql.SQL(
        "SELECT current_schema(), "
        "(SELECT installed_version FROM pg_available_extensions WHERE name = %s), "
        "EXISTS (SELECT FROM pg_available_extensions WHERE name = %s)"), [EXTENSION, EXTENSION]).fetchone()
    state = LiveState(schema=row[0], extension_installed=row[1] is not None, extension_available=row[2])
    oids = _read_relations(conn, state, names)
    if oids:
        _read_columns(conn, state, oids)
        _read_constraints(conn, state, oids)
        _read_indexes(conn, state, oids)
    if state.extension_installed:
        _read_timescale(conn, state, names)
    return state


def _read_relations(conn, state: LiveState, names: list[str]) -> dict[int, LiveTable]:
    rows = execute(conn, sql.SQL(
        "SELECT c.oid, c.relname, c.relkind, obj_description(c.oid, 'pg_class') "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = current_schema() AND c.relname = ANY(%s) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')"),
        [names]).fetchall()
    oids = {}
    for oid, name, kind, comment in rows:
        oids[oid] = state.relations[name] = LiveTable(name=name, kind=kind, comment=comment)
    return oids


def _read_columns(conn, state: LiveState, oids: dict[int, LiveTable]) -> None:
    rows = execute(conn, sql.SQL(
        "SELECT a.attrelid, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, "
        "pg_get_expr(d.adbin, d.adrelid) "
        "FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
        "WHERE a.attrelid = ANY(%s) AND a.attnum > 0 AND NOT a.attisdropped "
        "ORDER BY a.attrelid, a.attnum"), [list(oids)]).fetchall()
    for oid, name, type_, notnull, default in rows:
        oids[oid].columns[name] = LiveColumn(name, type_, not notnull, default)


def _read_constraints(conn, state: LiveState, oids: dict[int, LiveTable]) -> None:
    rows = execute(conn, sql.SQL(
        "SELECT c.conrelid, c.conname, c.contype, "
        "ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY AS k(attnum, pos) "
        "      JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum ORDER BY k.pos) "
        "FROM pg_constraint c WHERE c.conrelid = ANY(%s) AND c.contype IN ('p', 'u')"),
        [list(oids)]).fetchall()
    for oid, name, kind, columns in rows:
        oids[oid].constraints[name] = (kind, tuple(columns))


def _read_indexes(conn, state: LiveState, oids: dict[int, LiveTable]) -> None:
    rows = execute(conn, sql.SQL(
        "SELECT i.indrelid, ic.relname, i.indisunique, "
        "ARRAY(SELECT a.attname FROM unnest(i.indkey[0:i.indnkeyatts - 1]) WITH ORDINALITY AS k(attnum, pos) "
        "      LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum ORDER BY k.pos), "
        "i.indoption::int2[] "
        "FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid WHERE i.indrelid = ANY(%s)"),
        [list(oids)]).fetchall()
    for oid, name, unique, columns, options in rows:
        keys = tuple(
            KeyColumn(col, descending=bool(opt & 1), nulls_first=bool(opt & 2)) if col else None
            for col, opt in zip(columns, options)
        )
        oids[oid].indexes[name] = LiveIndex(name, keys, unique)


def _read_timescale(conn, state: LiveState, names: list[str]) -> None:
    for name, compressed in execute(conn, sql.SQL(
            "SELECT hypertable_name, compression_enabled FROM timescaledb_information.hypertables "
            "WHERE hypertable_schema = current_schema() AND hypertable_name = ANY(%s)"), [names]):
        state.hypertables[name] = LiveHypertable(name, compression_enabled=compressed)
    for name, column, dim_type, interval, partitions in execute(conn, sql.SQL(
            "SELECT hypertable_name, column_name, dimension_type, time_interval, num_partitions "
            "FROM timescaledb_information.dimensions "
            "WHERE hypertable_schema = current_schema() AND hypertable_name = ANY(%s) "
            "ORDER BY hypertable_name, dimension_number"), [names]):
        hyper = state.hypertables.get(name)
        if hyper is None:
            continue
        if dim_type == "Time" and hyper.time_column is None:
            hyper.time_column, hyper.chunk_interval = column, interval
        elif dim_type == "Space" and hyper.partition_column is None:
            hyper.partition_column, hyper.number_partitions = column, partitions
    _read_compression_settings(conn, state, names)
    for view, source, materialized_only, definition in execute(conn, sql.SQL(
            "SELECT view_name, hypertable_name, materialized_only, view_definition "
            "FROM timescaledb_information.continuous_aggregates "
            "WHERE view_schema = current_schema() AND view_name = ANY(%s)"), [names]):
        state.caggs[view] = LiveCagg(view, source, materialized_only, definition)
    for job_id, proc, relation, schedule, config in execute(conn, sql.SQL(
            "SELECT job_id, proc_name, hypertable_name, schedule_interval, config "
            "FROM timescaledb_information.jobs "
            "WHERE hypertable_schema = current_schema() AND hypertable_name = ANY(%s) "
            "ORDER BY job_id"), [names]):
        kind = POLICY_KINDS.get(proc)
        if kind:
            state.jobs[(relation, kind)] = LiveJob(job_id, kind, relation, schedule, config or {})


def _read_compression_settings(conn, state: LiveState, names: list[str]) -> None:
    rows = execute(conn, sql.SQL(
        "SELECT hypertable_name, attname, segmentby_column_index, orderby_column_index, "
        "orderby_asc, orderby_nullsfirst FROM timescaledb_information.compression_settings "
        "WHERE hypertable_schema = current_schema() AND hypertable_name = ANY(%s)"), [names]).fetchall()
    segment: dict[str, list] = {}
    order: dict[str, list] = {}
    for name, column, seg_pos, order_pos, asc, nulls_first in rows:
        if seg_pos is not None:
            segment.setdefault(name, []).append((seg_pos, column))
        if order_pos is not None:
            key = KeyColumn(column, descending=not asc, nulls_first=nulls_first)
            order.setdefault(name, []).append((order_pos, key))
    for name, hyper in state.hypertables.items():
        hyper.segment_by = tuple(c for _pos, c in sorted(segment.get(name, [])))
        hyper.order_by = tuple(k for _pos, k in sorted(order.get(name, []), key=lambda p: p[0]))


def normalize_intervals(conn: psycopg.Connection, texts: Iterable[str | None]) -> dict[str, timedelta]:
    """Let the server read each duration text, so spec and live values compare the same way."""
    unique = sorted({t for t in texts if t is not None})
    if not unique:
        return {}
    rows = execute(conn, sql.SQL("SELECT t, t::interval FROM unnest(%s::text[]) AS t"), [unique]).fetchall()
    return dict(rows)
