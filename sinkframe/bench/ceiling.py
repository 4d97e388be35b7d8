"""Ceiling: the most rows/s this database takes from one psycopg client into the sink's own table.

Rows are built in memory before the clock starts (the rows the smart_breaker
mapper makes from the workload's messages), then written with binary COPY and
declared column types (`Copy.set_types`, the types of the mapper's target) into
smart_breaker_data as the schema module made it, indexes included, with the
sink's default batch size (`batch.max_rows` of the connector file) per
transaction. No broker, no decoding, no mapping, no offsets, no metadata
upserts: what is left is psycopg's row encoding and the server's work, which any
sink writing that table in batches of that size also has to pay.

Secondary, for comparison with the figures of earlier versions of this
benchmark only: the same rows into a table made without any index (`LIKE` the
real one), 100,000 rows per transaction. No user runs that.
"""
from __future__ import annotations

import time

import psycopg
from psycopg import sql

from sinkframe.bench import database
from sinkframe.bench.database import BenchTables
from sinkframe.bench.workload import measurement_rows
from sinkframe.errors import SinkframeError
from sinkframe.pipeline.write.writer import ResolvedTarget

INDEX_FREE_TABLE_SUFFIX = "_no_indexes"
INDEX_FREE_ROWS_PER_TRANSACTION = 100_000


def copy_statement(table: str, target: ResolvedTarget) -> sql.Composed:
    return sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, target.target.column_names)))


def build_rows(tables: BenchTables, n: int, *, partitions: int) -> list[tuple]:
    rows = measurement_rows(n, topic="bench.ceiling", partitions=partitions)
    columns = tables.measurements.target.column_names
    if rows and len(rows[0]) != len(columns):
        raise SinkframeError(f"the benchmark's rows have {len(rows[0])} values, the mapper's target "
                             f"{tables.data} has {len(columns)} columns ({', '.join(columns)}): "
                             "update sinkframe/bench/workload.py")
    return rows


def timed_copy(dsn: str, table: str, target: ResolvedTarget, rows: list[tuple], rows_per_transaction: int) -> float:
    """Seconds to COPY `rows` into `table`, `rows_per_transaction` per transaction."""
    statement = copy_statement(table, target)
    types = [c.pg_type for c in target.target.columns]
    with psycopg.connect(dsn) as conn:
        started = time.perf_counter()
        for first in range(0, len(rows), rows_per_transaction):
            with conn.transaction(), conn.cursor() as cur, cur.copy(statement) as copy:
                copy.set_types(types)
                for row in rows[first:first + rows_per_transaction]:
                    copy.write_row(row)
        return time.perf_counter() - started


def best_of(dsn: str, table: str, target: ResolvedTarget, rows: list[tuple], *, rows_per_transaction: int,
            repeats: int, reset) -> dict:
    """Other work on the machine can only slow a run down, so the best run is the ceiling."""
    runs = []
    for _ in range(repeats):
        reset()
        runs.append(timed_copy(dsn, table, target, rows, rows_per_transaction))
    seconds = min(runs)
    return {
        "table": table,
        "rows": len(rows),
        "rows_counted": database.count_rows(dsn, table),
        "rows_per_transaction": rows_per_transaction,
        "seconds": round(seconds, 3),
        "rows_per_second": round(len(rows) / seconds),
        "rows_per_second_all_runs": [round(len(rows) / s) for s in runs],
    }


def run_ceilings(dsn: str, tables: BenchTables, n: int, *, partitions: int, repeats: int) -> tuple[dict, dict]:
    """(the ceiling: schema-made table, sink's batch size; the index-free secondary line)."""
    built_at = time.perf_counter()
    rows = build_rows(tables, n, partitions=partitions)
    build_seconds = round(time.perf_counter() - built_at, 3)
    target = tables.measurements

    ceiling = best_of(dsn, tables.data, target, rows, rows_per_transaction=tables.batch_rows, repeats=repeats,
                      reset=lambda: database.reset_tables(dsn, tables))
    ceiling.update(build_seconds_not_timed=build_seconds, **database.table_facts(dsn, tables.data))

    bare = tables.data + INDEX_FREE_TABLE_SUFFIX
    database.create_index_free_copy(dsn, tables.data, bare)
    try:
        index_free = best_of(dsn, bare, target, rows, rows_per_transaction=INDEX_FREE_ROWS_PER_TRANSACTION,
                             repeats=repeats, reset=lambda: database.truncate(dsn, (bare,)))
        index_free.update(database.table_facts(dsn, bare))
    finally:
        database.drop_table(dsn, bare)
    database.reset_tables(dsn, tables)
    return ceiling, index_free
