"""The benchmark's own database: created fresh for each run, its tables made as users make them.

The tables are those of the benchmark's connector file (configs/smart_breaker.yaml),
with the columns of its mapper's targets, created by the schema module from the
schema specs (`schema/`), as `sinkframe schema apply` and `sinkframe run` create
them: indexes included; hypertables, continuous aggregates and policies when the
server has TimescaleDB, plain tables and indexes when it has not (the sink then
runs with SINKFRAME_PLAIN_POSTGRES=1). The sink applies the schema again when it
starts, as it does for users; the plan is empty by then.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from sinkframe.config.connector import ConnectorConfig, load_connector
from sinkframe.mapping.registry import PluginRegistry
from sinkframe.pipeline.runner import build_mapper, resolve_targets
from sinkframe.pipeline.write.offsets import CREATE_OFFSETS_TABLE, OFFSETS_TABLE
from sinkframe.pipeline.write.writer import ResolvedTarget, create_dead_letter_table
from sinkframe.schema import Plan, apply_schema, load_schema

BENCH_DATABASE = "sinkframe_bench"


@dataclass(frozen=True)
class BenchTables:
    """What the benchmark's connector writes: table names and columns, read from the connector
    file and its mapper (the `measurements` and `device_metadata` roles of smart_breaker)."""

    connector: ConnectorConfig
    measurements: ResolvedTarget
    device_metadata: ResolvedTarget

    @classmethod
    def from_connector(cls, config: Path) -> "BenchTables":
        connector = load_connector(config)
        targets = resolve_targets(connector, build_mapper(connector, PluginRegistry()))
        return cls(connector, targets["measurements"], targets["device_metadata"])

    @property
    def data(self) -> str:
        return self.measurements.table

    @property
    def metadata(self) -> str:
        return self.device_metadata.table

    @property
    def dead_letters(self) -> str:
        return self.connector.dead_letter_table

    @property
    def batch_rows(self) -> int:
        """The sink's rows per transaction at most (`batch.max_rows` of the connector file)."""
        return self.connector.max_rows

    @property
    def written(self) -> tuple[str, ...]:
        """Every table a section writes: the connector's, the offsets, the dead letters."""
        return (self.data, self.metadata, OFFSETS_TABLE, self.dead_letters)


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


def timescaledb_available(dsn: str) -> bool:
    """Whether the server can make hypertables (the extension is installed or installable)."""
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone() \
            is not None


def create_tables(dsn: str, tables: BenchTables, schema_dir: Path, *, plain_postgres: bool) -> Plan:
    """The connector's tables from the schema specs, then the framework's own tables (offsets, dead
    letters) as the sink creates them, so pollers can read them before the sink starts."""
    spec = load_schema(schema_dir)
    with psycopg.connect(dsn, autocommit=True) as conn:
        plan = apply_schema(conn, spec, tables={tables.data, tables.metadata}, plain_postgres=plain_postgres)
        conn.execute(CREATE_OFFSETS_TABLE)
        conn.execute(create_dead_letter_table(tables.dead_letters))
    return plan


def table_facts(dsn: str, table: str) -> dict:
    """How a table was made: its indexes (definitions) and whether it is a hypertable."""
    with psycopg.connect(dsn) as conn:
        indexes = [d for (d,) in conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename = %s "
            "ORDER BY indexname", (table,))]
        hypertable = False
        if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone():
            hypertable = conn.execute("SELECT 1 FROM timescaledb_information.hypertables "
                                      "WHERE hypertable_name = %s", (table,)).fetchone() is not None
    return {"table": table, "hypertable": hypertable, "indexes": indexes}


def create_index_free_copy(dsn: str, source: str, name: str) -> None:
    """A plain table with `source`'s columns, NOT NULLs and defaults, and no index at all."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS)").format(
            sql.Identifier(name), sql.Identifier(source)))


def drop_table(dsn: str, name: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))


def truncate(dsn: str, tables: tuple[str, ...]) -> None:
    """Empty the tables, then checkpoint, so each section starts from the same state."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(map(sql.Identifier, tables))))
        checkpoint(conn)


def reset_tables(dsn: str, tables: BenchTables) -> None:
    truncate(dsn, tables.written)


def checkpoint(conn: psycopg.Connection) -> None:
    """Flush dirty pages now, so a checkpoint does not land in the middle of a timed section."""
    try:
        conn.execute("CHECKPOINT")
    except psycopg.errors.InsufficientPrivilege:
        pass  # not a superuser: the figures are a little noisier


def count_rows(dsn: str, table: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()[0]


def count_distinct_sources(dsn: str, table: str) -> int:
    """Rows with distinct Kafka coordinates: equals the row count when nothing was written twice."""
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql.SQL(
            "SELECT count(*) FROM (SELECT DISTINCT source_topic, source_partition, source_offset FROM {}) s"
        ).format(sql.Identifier(table))).fetchone()[0]


def stored_offsets(conn: psycopg.Connection, topic: str) -> dict[int, int]:
    """partition -> next offset the sink has committed (rows and offsets commit together)."""
    return dict(conn.execute(sql.SQL("SELECT partition, next_offset FROM {} WHERE topic = %s").format(
        sql.Identifier(OFFSETS_TABLE)), (topic,)).fetchall())


def server_facts(dsn: str) -> dict:
    names = ("server_version", "shared_buffers", "synchronous_commit", "fsync", "wal_level", "max_wal_size")
    with psycopg.connect(dsn) as conn:
        facts = {name: conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()[0]
                 for name in names}
        row = conn.execute("SELECT coalesce(installed_version, default_version) FROM pg_available_extensions "
                           "WHERE name = 'timescaledb'").fetchone()
    facts["timescaledb"] = row[0] if row else None
    return facts
