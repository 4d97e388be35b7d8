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
from sinkframe.bench.endtoend import unique_topic
from sinkframe.bench.services import BenchContext
from sinkframe.bench.workload import create_topic, produce_all
from sinkframe.errors import SinkframeError
from sinkframe_plugins.smart_breaker import FLOAT_MEASUREMENTS

METADATA_FIELDS = ("manufacturer", "model", "firmware_version", "location")


def insert_statement() -> sql.Composed:
    names = database.DATA_COLUMN_NAMES
    return sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        sql.Identifier(database.DATA_TABLE), sql.SQL(", ").join(map(sql.Identifier, names)),
        sql.SQL(", ").join(sql.Placeholder() * len(names)))


def upsert_statement() -> sql.Composed:
    names = [name for name, _, _ in database.METADATA_COLUMNS]
    updates = sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(n))
                                 for n in names if n not in ("device_id", "first_seen"))
    return sql.SQL("INSERT INTO {t} ({cols}) VALUES ({vals}) ON CONFLICT (device_id) DO UPDATE SET {updates} "
                   "WHERE {t}.last_seen <= EXCLUDED.last_seen").format(
        t=sql.Identifier(database.METADATA_TABLE), cols=sql.SQL(", ").join(map(sql.Identifier, names)),
        vals=sql.SQL(", ").join(sql.Placeholder() * len(names)), updates=updates)


class NaiveConnector:
    def __init__(self, conn: psycopg.Connection):
        self.conn = conn
        self.insert = insert_statement()
        self.upsert = upsert_statement()

    def handle(self, msg) -> None:
        message = json.loads(msg.value())
        measurements = message.get("measurements") or {}
        seen = datetime.fromisoformat(message["timestamp"])
        device_id = message["device_id"]
        self.conn.execute(self.insert, (
            seen, device_id, *(measurements.get(name) for name in FLOAT_MEASUREMENTS),
            measurements.get("breaker_status"), measurements.get("trip_count"), None,
            msg.topic(), msg.partition(), msg.offset()))
        metadata = message.get("metadata")
        if metadata:
            fdi = message.get("fdi_package") or {}
            self.conn.execute(self.upsert, (
                device_id, message.get("device_type"), *(metadata.get(f) for f in METADATA_FIELDS),
                Jsonb(metadata.get("capabilities")), fdi.get("package_id"), fdi.get("version"), seen, seen))
        self.conn.commit()


def run_naive(ctx: BenchContext, messages: int) -> dict:
    topic = unique_topic("naive")
    with services.broker(ctx, "naive") as bootstrap:
        create_topic(bootstrap, topic, ctx.partitions)
        produce_all(bootstrap, topic, messages)
        database.reset_tables(ctx.dsn)
        consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": "bench-naive", "auto.offset.reset": "earliest",
            "enable.auto.commit": True,
            "session.timeout.ms": services.sink_env(ctx, bootstrap, topic)["SINKFRAME_KAFKA_SESSION_TIMEOUT_MS"]})
        consumer.subscribe([topic])
        started = time.perf_counter()
        first_at, done = None, 0
        try:
            with psycopg.connect(ctx.dsn) as conn:
                connector = NaiveConnector(conn)
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
        "rows_counted": database.count_rows(ctx.dsn),
        "assignment_wait_seconds": round(first_at - started, 3),
        "seconds_first_message_to_last_commit": round(seconds, 3),
        "msgs_per_second": round(messages / seconds),
    }
