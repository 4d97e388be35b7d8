"""Ceiling: the most rows/s this database takes into smart_breaker_data from one psycopg client.

Rows are built in memory before the clock starts, then written with binary COPY
and declared column types (`Copy.set_types`), `rows_per_transaction` rows per
transaction. No broker, no decoding, no mapping, no offsets: what is left is
psycopg's row encoding and the server's work, which any sink also has to pay.
"""
from __future__ import annotations

import time

import psycopg
from psycopg import sql

from sinkframe.bench import database
from sinkframe.bench.workload import measurement_rows

DEFAULT_ROWS_PER_TRANSACTION = 100_000


def copy_statement() -> sql.Composed:
    return sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        sql.Identifier(database.DATA_TABLE),
        sql.SQL(", ").join(map(sql.Identifier, database.DATA_COLUMN_NAMES)))


def run_ceiling(dsn: str, rows: int, *, rows_per_transaction: int = DEFAULT_ROWS_PER_TRANSACTION) -> dict:
    database.reset_tables(dsn)
    built_at = time.perf_counter()
    data = measurement_rows(rows, topic="bench.ceiling", partitions=4)
    build_seconds = time.perf_counter() - built_at
    statement = copy_statement()
    with psycopg.connect(dsn) as conn:
        started = time.perf_counter()
        for first in range(0, rows, rows_per_transaction):
            with conn.transaction(), conn.cursor() as cur, cur.copy(statement) as copy:
                copy.set_types(database.DATA_COLUMN_TYPES)
                for row in data[first:first + rows_per_transaction]:
                    copy.write_row(row)
        seconds = time.perf_counter() - started
    del data
    counted = database.count_rows(dsn)
    return {
        "rows": rows,
        "rows_counted": counted,
        "rows_per_transaction": rows_per_transaction,
        "seconds": round(seconds, 3),
        "rows_per_second": round(rows / seconds),
        "build_seconds_not_timed": round(build_seconds, 3),
    }
