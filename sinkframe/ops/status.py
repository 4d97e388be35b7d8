"""`sinkframe status`: where each connector stands, from the brokers and the database.

Per partition: the high watermark, the group's offset committed in Kafka (a
mirror, for lag tools) and the offset stored in the database with the rows (the
truth: where a restart resumes). Lag is high watermark minus stored offset.
Per table: rows ingested in the last minute and hour (by `ingested_at`, among
rows whose event time is within `lookback`, so the count never scans old
chunks). Dead letters per connector, and whether the tables match the schema
specs.

With `tenant`, the tables are that registered tenant's (`tenant_NAME.TABLE`) and
the schema check is the one `sinkframe schema plan` makes for its schema (search
path set to it, its retention). Offsets and dead letters stay the connector's:
they live in public, shared by every tenant it routes to; of the dead letters,
those of stage `route` naming the tenant are counted apart (a message for it that
came while it was not registered).
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
from sinkframe.config.settings import Settings
from sinkframe.errors import ConfigError, SinkframeError
from sinkframe.mapping.registry import PluginRegistry
from sinkframe.ops.health import error_line
from sinkframe.ops.kafka import committed, monitor_consumer, topic_partitions, watermarks
from sinkframe.pipeline.runner import build_mapper, load_connectors, resolve_targets
from sinkframe.pipeline.write.offsets import OFFSETS_TABLE, load_offsets
from sinkframe.tenants.registry import Tenant, check_name, find_tenant, known_tenants

log = logging.getLogger(__name__)

INGEST_COLUMNS = ("ingested_at", "updated_at")  # when the database received a row, by preference

_COLUMNS = sql.SQL("SELECT column_name FROM information_schema.columns "
                   "WHERE table_schema = coalesce(%s::text, current_schema()) AND table_name = %s")
ROUTE_STAGE = "route"


@dataclass
class PartitionStatus:
    partition: int
    low: int | None = None
    high: int | None = None
    kafka_committed: int | None = None
    db_stored: int | None = None
    stored_age: float | None = None  # seconds since the database's offset last advanced

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
    tenant_dead_letters: int | None = None  # with a tenant: those of stage route that name it
    schema: str = "unknown"
    schema_details: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    worst_scores: list[dict] = field(default_factory=list)  # models: the highest-scored keys lately

    progress: str | None = None  # "stalled: ..." when messages wait and nothing was stored for a while

    @property
    def lag(self) -> int | None:
        lags = [p.lag for p in self.partitions]
        return None if not lags or None in lags else sum(lags)

    def judge_log_end(self) -> None:
        """A stored offset past the partition's log end: the topic was re-created or truncated, and
        a sink stops that partition (pipeline/consume/logend.py) while its lag reads 0."""
        for p in self.partitions:
            if p.db_stored is not None and p.high is not None and p.db_stored > p.high:
                self.problems.append(
                    f"{self.topic}[{p.partition}]: stored offset {p.db_stored} is past the end of the log "
                    f"(high watermark {p.high}): the topic was re-created or truncated; see "
                    "consumer.stored_offset_past_log_end in docs/reliability.md")

    def judge_progress(self, stall_after: float) -> None:
        """Stalled: messages wait (lag > 0) and no waiting partition's offset advanced for
        `stall_after` seconds. From here a sink that is not running looks the same."""
        waiting = [p for p in self.partitions if p.lag]
        if not waiting:
            self.progress = "up to date" if self.lag == 0 else None
            return
        ages = [p.stored_age for p in waiting]
        quiet = None if None in ages else min(ages)
        if quiet is not None and quiet < stall_after:
            self.progress = "progressing"
        else:
            since = f"for {quiet:.0f}s" if quiet is not None else "ever"
            self.progress = (f"stalled: {sum(p.lag for p in waiting)} messages waiting and nothing stored {since} "
                             "(is a sink running? see its /readyz)")


@dataclass
class StatusReport:
    database: str
    brokers: str
    connectors: list[ConnectorStatus]
    problems: list[str] = field(default_factory=list)
    tenant: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems and not any(c.problems for c in self.connectors)

    def as_dict(self) -> dict:
        return {"ok": self.ok, "database": self.database, "brokers": self.brokers, "tenant": self.tenant,
                "tenant_schema": _schema_of(self.tenant), "problems": self.problems,
                "connectors": [{**asdict(c), "lag": c.lag,
                                "partitions": [{**asdict(p), "lag": p.lag} for p in c.partitions]}
                               for c in self.connectors]}


def collect_status(files: Sequence[Path], settings: Settings, *, plugins_dirs: Sequence[Path] = (),
                   lookback: float = 86400.0, tenant: str | None = None) -> StatusReport:
    """Raises ConfigError for a tenant name that is not one (before connecting) or not registered."""
    if tenant is not None:
        check_name(tenant)
    connectors = load_connectors(files)
    registry = PluginRegistry(plugins_dirs)
    report = StatusReport(settings.redacted_dsn, settings.kafka.get("bootstrap.servers", ""),
                          [ConnectorStatus(c.name, c.topic, c.group_id, c.enabled) for c in connectors],
                          tenant=tenant)
    tables = {c.name: _tables_of(c, registry, status) for c, status in zip(connectors, report.connectors)}
    for connector, status in zip(connectors, report.connectors):
        _read_kafka(settings, connector, status)
    try:
        conn = psycopg.connect(settings.dsn, autocommit=True, application_name="sinkframe-status")
    except psycopg.Error as err:
        report.problems.append(f"database unreachable ({settings.redacted_dsn}): "
                               f"{error_line(err, settings.dsn)}")
        return report
    with conn:
        registered = _registered_tenant(conn, tenant) if tenant is not None else None
        for connector, status in zip(connectors, report.connectors):
            _read_database(conn, connector, status, tables[connector.name], lookback, registered)
            _read_schema(conn, settings, status, tables[connector.name], registered)
            status.judge_log_end()
            status.judge_progress(settings.stall_after)
            _read_scores(conn, connector, status, lookback)
    return report


def _read_scores(conn: psycopg.Connection, connector: ConnectorConfig, status: ConnectorStatus,
                 lookback: float, limit: int = 5) -> None:
    """The keys its models scored highest within the lookback (sinkframe.models)."""
    if not connector.models:
        return
    from datetime import datetime, timedelta, timezone

    from sinkframe.models.store import worst_keys

    since = datetime.now(timezone.utc) - timedelta(seconds=lookback)
    status.worst_scores = [{"model": w.model, "key": w.score_key, "score": w.score, "alarm": w.alarm,
                            "bucket": w.bucket.isoformat()}
                           for w in worst_keys(conn, connector.name, since=since, limit=limit)]


def _registered_tenant(conn: psycopg.Connection, name: str) -> Tenant:
    found = find_tenant(conn, name)
    if found is None:
        registered = ", ".join(known_tenants(conn)) or "none"
        raise ConfigError(f"no tenant named {name!r} (registered: {registered}); "
                          f"`sinkframe tenants add {name}` registers it")
    return found


def _schema_of(tenant: str | None) -> str | None:
    return Tenant(tenant).schema if tenant is not None else None


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
                   tables: list[str], lookback: float, tenant: Tenant | None) -> None:
    try:
        stored = load_offsets(conn, connector.group_id, connector.topic)
    except psycopg.errors.UndefinedTable:
        stored = {}  # nothing was ever written
    by_partition = {p.partition: p for p in status.partitions}
    for partition, offset in sorted(stored.items()):
        by_partition.setdefault(partition, PartitionStatus(partition)).db_stored = offset
    for partition, age in _stored_ages(conn, connector).items():
        by_partition[partition].stored_age = age
    status.partitions = sorted(by_partition.values(), key=lambda p: p.partition)
    schema = tenant.schema if tenant else None
    status.tables = [_activity(conn, table, lookback, schema) for table in tables]
    if connector.tolerance == "all" and connector.dead_letter_table:
        _count_dead_letters(conn, connector, status, tenant)


def _stored_ages(conn: psycopg.Connection, connector: ConnectorConfig) -> dict[int, float]:
    """partition -> seconds since its stored offset last advanced (the offsets row's updated_at)."""
    query = sql.SQL("SELECT partition, extract(epoch FROM now() - updated_at)::float8 FROM {} "
                    "WHERE consumer_group = %s AND topic = %s").format(sql.Identifier(OFFSETS_TABLE))
    try:
        return dict(conn.execute(query, (connector.group_id, connector.topic)).fetchall())
    except psycopg.errors.UndefinedTable:
        return {}


def _count_dead_letters(conn: psycopg.Connection, connector: ConnectorConfig, status: ConnectorStatus,
                        tenant: Tenant | None) -> None:
    # The router's reason quotes the tenant it asked for (`unknown tenant 'acme' (...)`). A valid
    # name's repr is the name in single quotes, so 'acme' does not match 'acme_eu'; strpos, not
    # LIKE, since `_` in a name is a LIKE wildcard. Same scan as the total: no extra cost.
    quoted = f"'{tenant.name}'" if tenant else None
    query = sql.SQL("SELECT count(*), count(*) FILTER (WHERE stage = %s AND strpos(error_message, %s) > 0) "
                    "FROM {} WHERE connector = %s").format(sql.Identifier(connector.dead_letter_table))
    try:
        total, routed = conn.execute(query, (ROUTE_STAGE, quoted, connector.name)).fetchone()
    except psycopg.errors.UndefinedTable:
        total, routed = 0, 0
    status.dead_letters = total
    status.tenant_dead_letters = routed if tenant else None


def _activity(conn: psycopg.Connection, table: str, lookback: float, schema: str | None = None) -> TableActivity:
    columns = {row[0] for row in conn.execute(_COLUMNS, (schema, table)).fetchall()}
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
        ingest=sql.Identifier(ingest), table=sql.Identifier(schema, table) if schema else sql.Identifier(table),
        where=where)
    minute, hour = conn.execute(query, params).fetchone()
    return TableActivity(table, minute, hour)


def _read_schema(conn: psycopg.Connection, settings: Settings, status: ConnectorStatus, tables: list[str],
                 tenant: Tenant | None) -> None:
    from sinkframe.schema import load_schema, plan_schema
    from sinkframe.tenants.provision import plan_tenant_objects

    if not tables:
        return
    try:
        spec = load_schema(settings.schema_paths)
        declared = set(tables) & spec.table_names()
        if not declared:
            status.schema = f"not managed (no table in the schema specs under {', '.join(settings.schema_paths)})"
            return
        if tenant is None:
            plan = plan_schema(conn, spec, tables=declared, plain_postgres=settings.plain_postgres)
            drift, steps = plan.drift, [s.description for s in plan.steps]
        else:  # as `schema plan` does it: search path on the tenant's schema, its retention, its grants
            planned = plan_tenant_objects(conn, spec, tenant, tables=declared, plain_postgres=settings.plain_postgres)
            drift, steps = planned.objects.drift, planned.descriptions()
    except SinkframeError as err:
        status.schema, status.schema_details = "unknown", [str(err)]
        return
    undeclared = sorted(set(tables) - declared)
    if not steps and not drift:
        status.schema = "up to date"
    else:
        status.schema = f"drift: {len(steps)} change(s) pending (sinkframe schema plan)"
        status.schema_details = [str(d) for d in drift] + steps
    if undeclared:
        status.schema_details.append(f"not in the schema specs (not checked): {', '.join(undeclared)}")


def render_text(report: StatusReport) -> str:
    lines = [f"database: {report.database}", f"brokers:  {report.brokers}"]
    if report.tenant is not None:
        lines.append(f"tenant:   {report.tenant} (tables in schema {_schema_of(report.tenant)}; offsets and "
                     "dead letters are the connector's, in public)")
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
        if c.progress:
            lines.append(f"  progress: {c.progress}")
        if c.tables:
            where = f" in {_schema_of(report.tenant)}" if report.tenant is not None else ""
            lines.append(f"  rows ingested{where} (last 1m / 1h): " + "; ".join(
                f"{t.table} {t.note}" if t.note else f"{t.table} {t.last_minute} / {t.last_hour}"
                for t in c.tables))
        if c.dead_letters is not None:
            routed = (f" ({c.tenant_dead_letters} at stage {ROUTE_STAGE} naming tenant {report.tenant})"
                      if c.tenant_dead_letters is not None else "")
            lines.append(f"  dead letters: {c.dead_letters}{routed}")
        if c.worst_scores:
            lines.append("  highest model scores (worst first):")
            lines += [f"    {w['model']} {w['key']} {w['score']:.3f}{' ALARM' if w['alarm'] else ''} at {w['bucket']}"
                      for w in c.worst_scores]
    return "\n".join(lines)


def _n(value) -> str:
    return "-" if value is None else str(value)
