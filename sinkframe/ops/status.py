"""`sinkframe status`: where each connector stands, from the brokers and the database.

Per partition: the high watermark, the group's offset committed in Kafka (a
mirror, for lag tools) and the offset stored in the database with the rows (the
truth: where a restart resumes). Lag is high watermark minus stored offset.
Per table: rows ingested in the last minute and hour (by `ingested_at`, among
rows whose event time is within `lookback`, so the count never scans old
chunks). Dead letters per connector, and whether the tables match the schema
specs.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Sequence

import psycopg
from confluent_kafka import KafkaException
from psycopg import sql

from sinkframe.config.connector import ConnectorConfig
from sinkframe.errors import SinkframeError
from sinkframe.mapping.registry import PluginRegistry
from sinkframe.ops.health import error_line
from sinkframe.ops.kafka import committed, monitor_consumer, topic_partitions, watermarks
from sinkframe.pipeline.offsets import load_offsets
from sinkframe.pipeline.runner import build_mapper, load_connectors, resolve_targets
from sinkframe.config.settings import Settings

log = logging.getLogger(__name__)

INGEST_COLUMNS = ("ingested_at", "updated_at")  # when the database received a row, by preference

_COLUMNS = sql.SQL("SELECT column_name FROM information_schema.columns "
                   "WHERE table_schema = current_schema() AND table_name = %s")


@dataclass
class PartitionStatus:
    partition: int
    low: int | None = None
    high: int | None = None
    kafka_committed: int | None = None
    db_stored: int | None = None

    @property
    def lag(self) -> int | None:
        """Messages not yet in the database (from the start of the partition if nothing is stored)."""
        if self.high is None:
            return None
        start = self.db_stored if self.db_stored is not None else (self.low or 0)
        return max(self.high - start, 0)


@dataclass
class TableActivity:
    table: str
    last_minute: int | None = None
    last_hour: int | None = None
    note: str | None = None


@dataclass
class ConnectorStatus:
    name: str
    topic: str
    group_id: str
    enabled: bool
    partitions: list[PartitionStatus] = field(default_factory=list)
    tables: list[TableActivity] = field(default_factory=list)
    dead_letters: int | None = None
    schema: str = "unknown"
    schema_details: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def lag(self) -> int | None:
        lags = [p.lag for p in self.partitions]
        return None if not lags or None in lags else sum(lags)


@dataclass
class StatusReport:
    database: str
    brokers: str
    connectors: list[ConnectorStatus]
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and not any(c.problems for c in self.connectors)

    def as_dict(self) -> dict:
        return {"ok": self.ok, "database": self.database, "brokers": self.brokers, "problems": self.problems,
                "connectors": [{**asdict(c), "lag": c.lag,
                                "partitions": [{**asdict(p), "lag": p.lag} for p in c.partitions]}
                               for c in self.connectors]}


def collect_status(files: Sequence[Path], settings: Settings, *, plugins_dirs: Sequence[Path] = (),
                   lookback: float = 86400.0) -> StatusReport:
    connectors = load_connectors(files)
    registry = PluginRegistry(plugins_dirs)
    report = StatusReport(settings.redacted_dsn, settings.kafka.get("bootstrap.servers", ""),
                          [ConnectorStatus(c.name, c.topic, c.group_id, c.enabled) for c in connectors])
    tables = {c.name: _tables_of(c, registry, status) for c, status in zip(connectors, report.connectors)}
    for connector, status in zip(connectors, report.connectors):
        _read_kafka(settings, connector, status)
    try:
        conn = psycopg.connect(settings.dsn, autocommit=True, connect_timeout=5,
                               application_name="sinkframe-status")
    except psycopg.Error as err:
        report.problems.append(f"database unreachable ({settings.redacted_dsn}): "
                               f"{error_line(err, settings.dsn)}")
        return report
    with conn:
        for connector, status in zip(connectors, report.connectors):
            _read_database(conn, connector, status, tables[connector.name], lookback)
            _read_schema(conn, settings, status, tables[connector.name])
    return report


def _tables_of(connector: ConnectorConfig, registry: PluginRegistry, status: ConnectorStatus) -> list[str]:
    try:
        targets = resolve_targets(connector, build_mapper(connector, registry))
    except SinkframeError as err:
        status.problems.append(f"plugin {connector.plugin}: {err}")
        return []
    return sorted({t.table for t in targets.values()})


def _read_kafka(settings: Settings, connector: ConnectorConfig, status: ConnectorStatus) -> None:
    consumer = monitor_consumer(settings.kafka, group_id=connector.group_id)
    try:
        partitions = topic_partitions(consumer, connector.topic)
        marks = watermarks(consumer, connector.topic, partitions)
        kafka_committed = committed(consumer, connector.topic, partitions)
    except KafkaException as err:
        status.problems.append(f"kafka ({settings.kafka.get('bootstrap.servers')}): {err}")
        return
    finally:
        consumer.close()
    status.partitions = [PartitionStatus(p, marks[p].low, marks[p].high, kafka_committed.get(p))
                         for p in partitions]


def _read_database(conn: psycopg.Connection, connector: ConnectorConfig, status: ConnectorStatus,
                   tables: list[str], lookback: float) -> None:
    try:
        stored = load_offsets(conn, connector.group_id, connector.topic)
    except psycopg.errors.UndefinedTable:
        stored = {}  # nothing was ever written
    by_partition = {p.partition: p for p in status.partitions}
    for partition, offset in sorted(stored.items()):
        by_partition.setdefault(partition, PartitionStatus(partition)).db_stored = offset
    status.partitions = sorted(by_partition.values(), key=lambda p: p.partition)
    status.tables = [_activity(conn, table, lookback) for table in tables]
    if connector.tolerance == "all" and connector.dead_letter_table:
        try:
            status.dead_letters = conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE connector = %s").format(
                sql.Identifier(connector.dead_letter_table)), (connector.name,)).fetchone()[0]
        except psycopg.errors.UndefinedTable:
            status.dead_letters = 0


def _activity(conn: psycopg.Connection, table: str, lookback: float) -> TableActivity:
    columns = {row[0] for row in conn.execute(_COLUMNS, (table,)).fetchall()}
    if not columns:
        return TableActivity(table, note="table does not exist")
    ingest = next((c for c in INGEST_COLUMNS if c in columns), None)
    if ingest is None:
        return TableActivity(table, note="no ingested_at column")
    where = sql.SQL("{} >= now() - interval '1 hour'").format(sql.Identifier(ingest))
    params: list = []
    if "time" in columns:  # lets TimescaleDB skip every chunk older than the lookback
        where += sql.SQL(" AND {} >= now() - %s").format(sql.Identifier("time"))
        params.append(timedelta(seconds=lookback))
    query = sql.SQL("SELECT count(*) FILTER (WHERE {ingest} >= now() - interval '1 minute'), count(*) "
                    "FROM {table} WHERE {where}").format(
        ingest=sql.Identifier(ingest), table=sql.Identifier(table), where=where)
    minute, hour = conn.execute(query, params).fetchone()
    return TableActivity(table, minute, hour)


def _read_schema(conn: psycopg.Connection, settings: Settings, status: ConnectorStatus, tables: list[str]) -> None:
    from sinkframe.schema import load_schema, plan_schema

    if not tables:
        return
    try:
        spec = load_schema(settings.schema_paths)
        declared = set(tables) & spec.table_names()
        if not declared:
            status.schema = f"not managed (no table in the schema specs under {', '.join(settings.schema_paths)})"
            return
        plan = plan_schema(conn, spec, tables=declared, plain_postgres=settings.plain_postgres)
    except SinkframeError as err:
        status.schema, status.schema_details = "unknown", [str(err)]
        return
    undeclared = sorted(set(tables) - declared)
    if plan.empty and not plan.drift:
        status.schema = "up to date"
    else:
        status.schema = f"drift: {len(plan.steps)} change(s) pending (sinkframe schema plan)"
        status.schema_details = [str(d) for d in plan.drift] + [s.description for s in plan.steps]
    if undeclared:
        status.schema_details.append(f"not in the schema specs (not checked): {', '.join(undeclared)}")


def render_text(report: StatusReport) -> str:
    lines = [f"database: {report.database}", f"brokers:  {report.brokers}"]
    lines += [f"problem:  {p}" for p in report.problems]
    for c in report.connectors:
        lines.append("")
        lines.append(f"connector {c.name}{'' if c.enabled else ' (disabled)'}  topic {c.topic}  group {c.group_id}")
        lines.append(f"  schema: {c.schema}")
        lines += [f"    {d}" for d in c.schema_details]
        lines += [f"  problem: {p}" for p in c.problems]
        if c.partitions:
            lines.append(f"  {'partition':>9} {'high':>10} {'committed':>10} {'stored':>10} {'lag':>10}")
            for p in c.partitions:
                lines.append(f"  {p.partition:>9} {_n(p.high):>10} {_n(p.kafka_committed):>10} "
                             f"{_n(p.db_stored):>10} {_n(p.lag):>10}")
            lines.append(f"  {'total':>9} {'':>10} {'':>10} {'':>10} {_n(c.lag):>10}")
        if c.tables:
            lines.append("  rows ingested (last 1m / 1h): " + "; ".join(
                f"{t.table} {t.note}" if t.note else f"{t.table} {t.last_minute} / {t.last_hour}"
                for t in c.tables))
        if c.dead_letters is not None:
            lines.append(f"  dead letters: {c.dead_letters}")
    return "\n".join(lines)


def _n(value) -> str:
    return "-" if value is None else str(value)
