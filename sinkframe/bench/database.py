"""The benchmark's own database: created fresh for each run, tables as plain tables.

The tables have the columns of docs/tables.md; they are created here (not by the
schema module) so the benchmark measures the write path alone, and so it runs on
plain PostgreSQL. The sink is started with SINKFRAME_APPLY_SCHEMA=0.
"""
from __future__ import annotations

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from sinkframe.pipeline.offsets import CREATE_OFFSETS_TABLE, OFFSETS_TABLE
from sinkframe.pipeline.writer import create_dead_letter_table
from sinkframe_plugins.smart_breaker import FLOAT_MEASUREMENTS

BENCH_DATABASE = "sinkframe_bench"
DATA_TABLE = "smart_breaker_data"
METADATA_TABLE = "device_metadata"
DEAD_LETTER_TABLE = "sinkframe_dead_letters"

# (name, type, NOT NULL); ingested_at is filled by the database.
DATA_COLUMNS = (
    ("time", "timestamptz", True),
    ("device_id", "text", True),
    *((name, "double precision", False) for name in FLOAT_MEASUREMENTS),
    ("breaker_status", "text", False),
    ("trip_count", "integer", False),
    ("extra_measurements", "jsonb", False),
    ("source_topic", "text", True),
    ("source_partition", "integer", True),
    ("source_offset", "bigint", True),
)
METADATA_COLUMNS = (
    ("device_id", "text", True),
    ("device_type", "text", False),
    ("manufacturer", "text", False),
    ("model", "text", False),
    ("firmware_version", "text", False),
    ("location", "text", False),
    ("capabilities", "jsonb", False),
    ("fdi_package_id", "text", False),
    ("fdi_package_version", "text", False),
    ("first_seen", "timestamptz", True),
    ("last_seen", "timestamptz", True),
)
DATA_COLUMN_NAMES = tuple(name for name, _, _ in DATA_COLUMNS)
DATA_COLUMN_TYPES = tuple(pg_type for _, pg_type, _ in DATA_COLUMNS)


def bench_dsn(admin_dsn: str, dbname: str = BENCH_DATABASE) -> str:
    params = conninfo_to_dict(admin_dsn)
    params["dbname"] = dbname
    return make_conninfo("", **params)


def recreate_database(admin_dsn: str, dbname: str = BENCH_DATABASE) -> str:
    """Drop and create the benchmark database; return its DSN."""
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    return bench_dsn(admin_dsn, dbname)


def drop_database(admin_dsn: str, dbname: str = BENCH_DATABASE) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))


def _column_list(columns) -> sql.Composed:
    return sql.SQL(",\n    ").join(
        sql.SQL("{} {}{}").format(sql.Identifier(name), sql.SQL(pg_type), sql.SQL(" NOT NULL" if not_null else ""))
        for name, pg_type, not_null in columns)


def create_tables(dsn: str) -> None:
    data = sql.SQL("CREATE TABLE {} (\n    {},\n    ingested_at timestamptz NOT NULL DEFAULT now()\n)").format(
        sql.Identifier(DATA_TABLE), _column_list(DATA_COLUMNS))
    metadata = sql.SQL("CREATE TABLE {} (\n    {},\n    updated_at timestamptz NOT NULL DEFAULT now(),\n"
                       "    PRIMARY KEY (device_id)\n)").format(sql.Identifier(METADATA_TABLE),
                                                             _column_list(METADATA_COLUMNS))
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(data)
        conn.execute(metadata)
        # The framework's own tables, as the sink would create them, so pollers can read them at once.
        conn.execute(CREATE_OFFSETS_TABLE)
        conn.execute(create_dead_letter_table(DEAD_LETTER_TABLE))


def reset_tables(dsn: str) -> None:
    """Empty every table a section writes, so each section starts from the same state."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        tables = (DATA_TABLE, METADATA_TABLE, OFFSETS_TABLE, DEAD_LETTER_TABLE)
        conn.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(map(sql.Identifier, tables))))
        checkpoint(conn)


def checkpoint(conn: psycopg.Connection) -> None:
    """Flush dirty pages now, so a checkpoint does not land in the middle of a timed section."""
    try:
        conn.execute("CHECKPOINT")
    except psycopg.errors.InsufficientPrivilege:
        pass  # not a superuser: the figures are a little noisier


def count_rows(dsn: str, table: str = DATA_TABLE) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()[0]


def count_distinct_sources(dsn: str) -> int:
    """Rows with distinct Kafka coordinates: equals the row count when nothing was written twice."""
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql.SQL(
            "SELECT count(*) FROM (SELECT DISTINCT source_topic, source_partition, source_offset FROM {}) s"
        ).format(sql.Identifier(DATA_TABLE))).fetchone()[0]


def stored_offsets(conn: psycopg.Connection, topic: str) -> dict[int, int]:
    """partition -> next offset the sink has committed (rows and offsets commit together)."""
    return dict(conn.execute(sql.SQL("SELECT partition, next_offset FROM {} WHERE topic = %s").format(
        sql.Identifier(OFFSETS_TABLE)), (topic,)).fetchall())


def server_facts(dsn: str) -> dict:
    names = ("server_version", "shared_buffers", "synchronous_commit", "fsync", "wal_level", "max_wal_size")
    with psycopg.connect(dsn) as conn:
        return {name: conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()[0]
                for name in names}
