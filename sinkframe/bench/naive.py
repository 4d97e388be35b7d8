"""Naive baseline: the connector most people write first.

One message at a time: `consumer.poll()`, the standard library's `json.loads`,
one INSERT for the measurement row (plus the device_metadata upsert the
smart_breaker connector also does, so both write the same data), and one commit
per message. Kafka offsets are auto-committed (at-least-once, not exactly-once).
It runs inside the benchmark process; the clock runs from its first message to
its last commit, so the group-join wait is not counted.
"""
from __future__ import annotations

import json
import time
from datetime import datetime

import psycopg
from confluent_kafka import Consumer
from psycopg import sql
from psycopg.types.json import Jsonb

from sinkframe.bench import database, services
from sinkframe.bench.database import BenchTables
from sinkframe.bench.endtoend import unique_topic
from sinkframe.bench.services import BenchContext
from sinkframe.bench.workload import create_topic, produce_all
from sinkframe.errors import SinkframeError
from sinkframe.pipeline.write.writer import ResolvedTarget
from sinkframe_plugins.smart_breaker import FLOAT_MEASUREMENTS

METADATA_FIELDS = ("manufacturer", "model", "firmware_version", "location", "capabilities")


def insert_statement(target: ResolvedTarget) -> sql.Composed:
    names = target.target.column_names
    return sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        sql.Identifier(target.table), sql.SQL(", ").join(map(sql.Identifier, names)),
        sql.SQL(", ").join(sql.Placeholder() * len(names)))


def upsert_statement(target: ResolvedTarget) -> sql.Composed:
    """Newest metadata wins, as the sink merges it (the target's Upsert: key, version, kept minimums)."""
    upsert, names = target.target.upsert, target.target.column_names
    updates = sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(n))
                                 for n in names if n not in upsert.key and n not in upsert.min_columns)
    return sql.SQL("INSERT INTO {t} ({cols}) VALUES ({vals}) ON CONFLICT ({key}) DO UPDATE SET {updates} "
                   "WHERE {t}.{version} <= EXCLUDED.{version}").format(
        t=sql.Identifier(target.table), cols=sql.SQL(", ").join(map(sql.Identifier, names)),
        vals=sql.SQL(", ").join(sql.Placeholder() * len(names)),
        key=sql.SQL(", ").join(map(sql.Identifier, upsert.key)), updates=updates,
        version=sql.Identifier(upsert.version_column))


class NaiveConnector:
    """Rows as dicts by column name, put in the table's column order (from the mapper's targets)."""

    def __init__(self, conn: psycopg.Connection, tables: BenchTables):
        self.conn = conn
        self.data_columns = tables.measurements.target.column_names
        self.metadata_columns = tables.device_metadata.target.column_names
        self.insert = insert_statement(tables.measurements)
        self.upsert = upsert_statement(tables.device_metadata)

    def handle(self, msg) -> None:
        message = json.loads(msg.value())
        measurements = message.get("measurements") or {}
        seen = datetime.fromisoformat(message["timestamp"])
        device_id = message["device_id"]
        row = {name: measurements.get(name) for name in (*FLOAT_MEASUREMENTS, "breaker_status", "trip_count")}
        row.update(time=seen, device_id=device_id, source_topic=msg.topic(), source_partition=msg.partition(),
                   source_offset=msg.offset())
        self.conn.execute(self.insert, [row.get(name) for name in self.data_columns])
        metadata = message.get("metadata")
        if metadata:
            fdi = message.get("fdi_package") or {}
            info = {field: metadata.get(field) for field in METADATA_FIELDS}
            info.update(device_id=device_id, device_type=message.get("device_type"),
                        capabilities=Jsonb(info["capabilities"]), fdi_package_id=fdi.get("package_id"),
                        fdi_package_version=fdi.get("version"), first_seen=seen, last_seen=seen)
            self.conn.execute(self.upsert, [info.get(name) for name in self.metadata_columns])
        self.conn.commit()


def run_naive(ctx: BenchContext, messages: int) -> dict:
    topic = unique_topic("naive")
    with services.broker(ctx, "naive") as bootstrap:
        create_topic(bootstrap, topic, ctx.partitions)
        produce_all(bootstrap, topic, messages)
        database.reset_tables(ctx.dsn, ctx.tables)
        consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": "bench-naive", "auto.offset.reset": "earliest",
            "enable.auto.commit": True,
            "session.timeout.ms": services.session_timeout_ms()})
        consumer.subscribe([topic])
        started = time.perf_counter()
        first_at, done = None, 0
        try:
            with psycopg.connect(ctx.dsn) as conn:
                connector = NaiveConnector(conn, ctx.tables)
                while done < messages:
                    msg = consumer.poll(1.0)
                    if time.perf_counter() - started > max(120.0, messages / 100):
                        raise SinkframeError(f"naive baseline: timed out with {done} of {messages} messages")
                    if msg is None or msg.error() is not None:
                        continue
                    if first_at is None:
                        first_at = time.perf_counter()
                    connector.handle(msg)
                    done += 1
            finished = time.perf_counter()
        finally:
            consumer.close()
    seconds = finished - first_at
    return {
        "messages": messages,
        "rows_counted": database.count_rows(ctx.dsn, ctx.tables.data),
        "assignment_wait_seconds": round(first_at - started, 3),
        "seconds_first_message_to_last_commit": round(seconds, 3),
        "msgs_per_second": round(messages / seconds),
    }
