"""The database side: queries and counts, the data tables."""
from __future__ import annotations

import psycopg
from psycopg import sql



def query(dsn: str, statement, params=None) -> list[tuple]:
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        return conn.execute(statement, params).fetchall()


def count_rows(dsn: str, table: str) -> int:
    return query(dsn, sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))[0][0]


def row_counts(dsn: str, table: str = "iot_raw_data") -> tuple[int, int]:
    """(rows, distinct (source_topic, source_partition, source_offset)) of a data table."""
    statement = sql.SQL("SELECT count(*), count(DISTINCT (source_topic, source_partition, source_offset)) "
                        "FROM {}").format(sql.Identifier(table))
    return query(dsn, statement)[0]


def dead_letters(dsn: str) -> list[tuple]:
    return query(dsn, "SELECT topic, partition, kafka_offset, stage, error_class, error_message, sqlstate, "
                      "key, value FROM sinkframe_dead_letters ORDER BY partition, kafka_offset")


# The four tables of docs/tables.md, as plain tables (no TimescaleDB needed).
TABLES = {
    "iot_raw_data": """
        time timestamptz NOT NULL, device_id text NOT NULL, mqtt_topic text, payload jsonb,
        source_topic text NOT NULL, source_partition integer NOT NULL, source_offset bigint NOT NULL,
        ingested_at timestamptz NOT NULL DEFAULT now()""",
    "iot_enriched_data": """
        time timestamptz NOT NULL, device_id text NOT NULL, device_type text, payload jsonb, metadata jsonb,
        fdi_package jsonb, source_topic text NOT NULL, source_partition integer NOT NULL,
        source_offset bigint NOT NULL, ingested_at timestamptz NOT NULL DEFAULT now()""",
    "smart_breaker_data": """
        time timestamptz NOT NULL, device_id text NOT NULL,
        voltage_phase_a double precision, voltage_phase_b double precision, voltage_phase_c double precision,
        current_phase_a double precision, current_phase_b double precision, current_phase_c double precision,
        temperature double precision, power_factor double precision, frequency double precision,
        active_power double precision, reactive_power double precision, energy_kwh double precision,
        breaker_status text, trip_count integer, extra_measurements jsonb,
        source_topic text NOT NULL, source_partition integer NOT NULL, source_offset bigint NOT NULL,
        ingested_at timestamptz NOT NULL DEFAULT now()""",
    "device_metadata": """
        device_id text PRIMARY KEY, device_type text, manufacturer text, model text, firmware_version text,
        location text, capabilities jsonb, fdi_package_id text, fdi_package_version text,
        first_seen timestamptz NOT NULL, last_seen timestamptz NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now()""",
}


def create_tables(dsn: str, overrides: dict[str, str] | None = None) -> None:
    """Create the data tables; `overrides` replaces a table's column list (to add constraints)."""
    columns = {**TABLES, **(overrides or {})}
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table, body in columns.items():
            # The column lists are constants of this file, not input.
            conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (" + body + ")").format(sql.Identifier(table)))
