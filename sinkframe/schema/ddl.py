"""The statements the planner can emit, each composed with psycopg.sql.

Names are always `sql.Identifier`; durations and other DDL values are
`sql.Literal` (DDL and `SELECT create_hypertable(...)`-style calls in a plan
script cannot take parameters). Types and column defaults are SQL by nature:
types are checked against a strict pattern when the spec is loaded, defaults are
SQL expressions written by the spec's author.
"""
from __future__ import annotations

from psycopg import sql

from sinkframe.schema.spec import (
    ColumnSpec, CompressionSpec, ConstraintSpec, ContinuousAggregateSpec, IndexSpec, KeyColumn,
    TableSpec,
)


def quote_ident(name: str) -> str:
    """An identifier quoted for use inside a text value (regclass literals, compression settings)."""
    return '"' + name.replace('"', '""') + '"'


def regclass(name: str) -> sql.Composable:
    return sql.SQL("{}::regclass").format(sql.Literal(quote_ident(name)))


def interval(text: str | None) -> sql.Composable:
    return sql.SQL("{}::interval").format(sql.Literal(text))


def create_extension() -> sql.Composable:
    return sql.SQL("CREATE EXTENSION IF NOT EXISTS timescaledb")


def column_definition(column: ColumnSpec) -> sql.Composable:
    parts = [sql.Identifier(column.name), sql.SQL(column.type)]
    if not column.nullable:
        parts.append(sql.SQL("NOT NULL"))
    if column.default is not None:
        parts.append(sql.SQL("DEFAULT {}").format(sql.SQL(column.default)))
    return sql.SQL(" ").join(parts)


def constraint_definition(constraint: ConstraintSpec) -> sql.Composable:
    kind = sql.SQL("PRIMARY KEY" if constraint.kind == "primary key" else "UNIQUE")
    return sql.SQL("CONSTRAINT {} {} ({})").format(
        sql.Identifier(constraint.name), kind, sql.SQL(", ").join(map(sql.Identifier, constraint.columns)))


def create_table(table: TableSpec) -> sql.Composable:
    items = [column_definition(c) for c in table.columns]
    constraints = ([table.primary_key] if table.primary_key else []) + list(table.unique)
    items += [constraint_definition(c) for c in constraints]
    return sql.SQL("CREATE TABLE IF NOT EXISTS {} (\n    {}\n)").format(
        sql.Identifier(table.name), sql.SQL(",\n    ").join(items))


def add_column(table: str, column: ColumnSpec) -> sql.Composable:
    return sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {}").format(
        sql.Identifier(table), column_definition(column))


def drop_not_null(table: str, column: str) -> sql.Composable:
    return sql.SQL("ALTER TABLE {} ALTER COLUMN {} DROP NOT NULL").format(
        sql.Identifier(table), sql.Identifier(column))


def set_default(table: str, column: str, default: str | None) -> sql.Composable:
    action = sql.SQL("DROP DEFAULT") if default is None else sql.SQL("SET DEFAULT {}").format(sql.SQL(default))
    return sql.SQL("ALTER TABLE {} ALTER COLUMN {} {}").format(
        sql.Identifier(table), sql.Identifier(column), action)


def add_constraint(table: str, constraint: ConstraintSpec) -> sql.Composable:
    return sql.SQL("ALTER TABLE {} ADD {}").format(sql.Identifier(table), constraint_definition(constraint))


def key_column(column: KeyColumn) -> sql.Composable:
    parts = [sql.Identifier(column.name)]
    if column.descending:
        parts.append(sql.SQL("DESC"))
    if column.nulls_first is not None and column.nulls_first != column.descending:
        parts.append(sql.SQL("NULLS FIRST" if column.nulls_first else "NULLS LAST"))
    return sql.SQL(" ").join(parts)


def create_index(table: str, index: IndexSpec) -> sql.Composable:
    return sql.SQL("CREATE {}INDEX IF NOT EXISTS {} ON {} ({})").format(
        sql.SQL("UNIQUE ") if index.unique else sql.SQL(""), sql.Identifier(index.name),
        sql.Identifier(table), sql.SQL(", ").join(key_column(c) for c in index.columns))


def create_hypertable(table: TableSpec, *, migrate_data: bool) -> sql.Composable:
    hyper = table.hypertable
    migrate = sql.SQL(", migrate_data => true") if migrate_data else sql.SQL("")
    return sql.SQL(
        "SELECT create_hypertable({}, {}, chunk_time_interval => {}, if_not_exists => true{})").format(
        regclass(table.name), sql.Literal(hyper.time_column), interval(hyper.chunk_time_interval), migrate)


def add_dimension(table: TableSpec) -> sql.Composable:
    hyper = table.hypertable
    return sql.SQL("SELECT add_dimension({}, {}, number_partitions => {}, if_not_exists => true)").format(
        regclass(table.name), sql.Literal(hyper.partition_column), sql.Literal(hyper.number_partitions))


def set_chunk_time_interval(table: str, chunk_time_interval: str) -> sql.Composable:
    return sql.SQL("SELECT set_chunk_time_interval({}, {})").format(
        regclass(table), interval(chunk_time_interval))


def set_compression(table: str, compression: CompressionSpec) -> sql.Composable:
    options = [
        sql.SQL("timescaledb.compress"),
        sql.SQL("timescaledb.compress_segmentby = {}").format(
            sql.Literal(", ".join(quote_ident(c) for c in compression.segment_by))),
    ]
    if compression.order_by:
        order = ", ".join(quote_ident(c.name) + str(c)[len(c.name):] for c in compression.order_by)
        options.append(sql.SQL("timescaledb.compress_orderby = {}").format(sql.Literal(order)))
    return sql.SQL("ALTER TABLE {} SET ({})").format(sql.Identifier(table), sql.SQL(", ").join(options))


def add_compression_policy(table: str, compress_after: str) -> sql.Composable:
    return sql.SQL("SELECT add_compression_policy({}, compress_after => {}, if_not_exists => true)").format(
        regclass(table), interval(compress_after))


def remove_compression_policy(table: str) -> sql.Composable:
    return sql.SQL("SELECT remove_compression_policy({}, if_exists => true)").format(regclass(table))


def add_retention_policy(relation: str, drop_after: str) -> sql.Composable:
    return sql.SQL("SELECT add_retention_policy({}, drop_after => {}, if_not_exists => true)").format(
        regclass(relation), interval(drop_after))


def remove_retention_policy(relation: str) -> sql.Composable:
    return sql.SQL("SELECT remove_retention_policy({}, if_exists => true)").format(regclass(relation))


def _aggregate_expression(function: str, column: str | None, time_column: str) -> sql.Composable:
    if column is None:
        return sql.SQL("count(*)")
    if function in ("first", "last"):
        return sql.SQL("{}({}, {})").format(sql.SQL(function), sql.Identifier(column), sql.Identifier(time_column))
    return sql.SQL("{}({})").format(sql.SQL(function), sql.Identifier(column))


def continuous_aggregate_query(cagg: ContinuousAggregateSpec) -> sql.Composable:
    """The SELECT behind a continuous aggregate: bucket, group-by columns, aggregates."""
    bucket = sql.SQL("time_bucket({}, {})").format(interval(cagg.bucket_width), sql.Identifier(cagg.time_column))
    select = [sql.SQL("{} AS {}").format(bucket, sql.Identifier(cagg.bucket_column))]
    select += [sql.Identifier(c) for c in cagg.group_by]
    select += [sql.SQL("{} AS {}").format(_aggregate_expression(a.function, a.column, cagg.time_column),
                                          sql.Identifier(a.name)) for a in cagg.aggregates]
    group_by = [bucket] + [sql.Identifier(c) for c in cagg.group_by]
    return sql.SQL("SELECT {}\nFROM {}\nGROUP BY {}").format(
        sql.SQL(",\n       ").join(select), sql.Identifier(cagg.source), sql.SQL(", ").join(group_by))


def create_continuous_aggregate(cagg: ContinuousAggregateSpec) -> sql.Composable:
    """CREATE MATERIALIZED VIEW ... WITH NO DATA: its refresh policy (or a manual refresh) fills it.

    To be run outside a transaction block: several TimescaleDB versions refuse to create a
    continuous aggregate inside one.
    """
    return sql.SQL(
        "CREATE MATERIALIZED VIEW {} WITH (timescaledb.continuous, timescaledb.materialized_only = {}) AS\n"
        "{}\nWITH NO DATA").format(
        sql.Identifier(cagg.name), sql.SQL("true" if cagg.materialized_only else "false"),
        continuous_aggregate_query(cagg))


def create_temporary_view(name: str, query: sql.Composable) -> sql.Composable:
    return sql.SQL("CREATE TEMPORARY VIEW {} AS {}").format(sql.Identifier(name), query)


def set_materialized_only(name: str, materialized_only: bool) -> sql.Composable:
    return sql.SQL("ALTER MATERIALIZED VIEW {} SET (timescaledb.materialized_only = {})").format(
        sql.Identifier(name), sql.SQL("true" if materialized_only else "false"))


def add_refresh_policy(cagg: ContinuousAggregateSpec) -> sql.Composable:
    refresh = cagg.refresh
    return sql.SQL(
        "SELECT add_continuous_aggregate_policy({}, start_offset => {}, end_offset => {}, "
        "schedule_interval => {}, if_not_exists => true)").format(
        regclass(cagg.name), interval(refresh.start_offset), interval(refresh.end_offset),
        interval(refresh.schedule_interval))


def remove_refresh_policy(name: str) -> sql.Composable:
    return sql.SQL("SELECT remove_continuous_aggregate_policy({}, if_exists => true)").format(regclass(name))
