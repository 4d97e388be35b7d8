"""Runner: connector files -> mappers, writers and tasks in one process, until stopped."""
from __future__ import annotations

import gc
import logging
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from sinkframe.config.connector import ConnectorConfig, load_connector, schema_problems
from sinkframe.config.settings import Settings, redact_error
from sinkframe.errors import ConfigError, ConnectorFailed, SinkframeError
from sinkframe.mapping.base import Mapper
from sinkframe.mapping.registry import PluginRegistry
from sinkframe.pipeline.route import TenantRouter
from sinkframe.pipeline.stats import ConnectorState
from sinkframe.pipeline.task import ConnectorTask
from sinkframe.pipeline.write import dberrors
from sinkframe.pipeline.write.dbconnect import (Deadline, DatabaseRefused, first_line, refusal, retry_delay,
                                                wait_for_database)
from sinkframe.pipeline.write.session import SESSIONS
from sinkframe.pipeline.write.writer import BatchWriter, ResolvedTarget
from sinkframe.schema.contract import check_live_targets

log = logging.getLogger(__name__)


def load_connectors(paths: Iterable[Path]) -> list[ConnectorConfig]:
    """Load every file; raise one ConfigError listing every problem in every file."""
    connectors, problems = [], []
    for path in paths:
        try:
            connectors.append(load_connector(Path(path)))
        except ConfigError as err:
            problems.extend(err.problems)
    names = [c.name for c in connectors]
    for connector in connectors:
        if names.count(connector.name) > 1:
            problems.append(f"{connector.path}::$.name: connector name {connector.name!r} is used by "
                            "more than one file")
    if problems:
        raise ConfigError(problems[0], problems)
    return connectors


def build_mapper(connector: ConnectorConfig, registry: PluginRegistry) -> Mapper:
    """The connector's mapper; its config checked against the plugin's JSON Schema the way the
    connector file is checked against its own (same messages, same "did you mean")."""
    mapper_cls = registry.get(connector.plugin)
    problems = schema_problems(connector.doc, mapper_cls.config_schema, connector.plugin_config,
                               prefix=("mapper", "config"))
    if problems:
        raise ConfigError(problems[0], problems)
    return mapper_cls(connector.plugin_config)


def resolve_targets(connector: ConnectorConfig, mapper: Mapper) -> dict[str, ResolvedTarget]:
    """Each of the mapper's targets bound to its table: the connector's `tables:` entry, else the plugin's."""
    roles = ", ".join(sorted(mapper.targets))
    problems = [connector.doc.problem(("tables", role), f"plugin {connector.plugin!r} has no table role "
                                                        f"{role!r}; its roles are: {roles}")
                for role in sorted(set(connector.tables) - set(mapper.targets))]
    if problems:
        raise ConfigError(problems[0], problems)
    return {role: ResolvedTarget(role, connector.tables.get(role, target.default_table), target)
            for role, target in mapper.targets.items()}


def alert_recorder(connector: ConnectorConfig, mapper: Mapper, targets: Mapping[str, ResolvedTarget],
                   kafka: Mapping[str, str], models: Sequence = (), *, retention: str | None = None):
    """The connector's alert rules as a part of its write transaction; None when it has none.

    `models` (ModelSpec): their scores are columns the rules may use.
    """
    from dataclasses import replace

    from sinkframe.alerts import parse_rules
    from sinkframe.alerts.publish import AlertPublisher
    from sinkframe.alerts.recorder import AlertRecorder
    from sinkframe.models.spec import with_model_columns

    scored = with_model_columns(mapper.targets, models)
    rules, problems = parse_rules(list(connector.alerts), scored,
                                  where=lambda path: connector.doc.problem(path, ""))
    if problems:
        raise ConfigError(problems[0], problems)
    if not rules:
        return None
    publisher = (AlertPublisher(kafka, topic=connector.alerts_topic, connector=connector.name)
                 if connector.alerts_topic else None)
    targets = {role: replace(resolved, target=scored[role]) for role, resolved in targets.items()}
    return AlertRecorder(connector.name, rules, targets, publisher=publisher, retention=retention)


def transaction_parts(connector: ConnectorConfig, mapper: Mapper, targets: Mapping[str, ResolvedTarget],
                      kafka: Mapping[str, str], *, alerts_retention: str | None = None, method: str = "copy") -> list:
    """What the connector writes with every batch besides its rows: model scores, then alerts (which may
    use the scores)."""
    from sinkframe.models.spec import parse_models

    models, problems = parse_models(list(connector.models), mapper.targets,
                                    where=lambda path: connector.doc.problem(path, ""))
    if problems:
        raise ConfigError(problems[0], problems)
    alerts = alert_recorder(connector, mapper, targets, kafka, models, retention=alerts_retention)
    if not models:
        return [alerts] if alerts else []
    from sinkframe.models.recorder import ModelScorer, ScoredAlerts

    scorer = ModelScorer(connector.name, models, targets, method=method)
    return [scorer, ScoredAlerts(alerts, scorer)] if alerts else [scorer]


# What the pipeline is doing before its connectors run (readiness says it).
WAITING_FOR_DATABASE = "waiting for the database"
PROVISIONING = "provisioning the tables"
RUNNING = "running"


@dataclass
class Pipeline:
    """Everything `sinkframe run` starts, kept together so it can be stopped as one.

    Start-up: `create_pool` (not connected yet), `build`, then `connect`: wait
    for the database, provision, and only then `start` the connectors' threads.
    """

    settings: Settings
    connectors: Sequence[ConnectorConfig]
    registry: PluginRegistry
    pool: ConnectionPool | None = None
    tasks: list[ConnectorTask] = field(default_factory=list)
    stop_event: threading.Event = field(default_factory=threading.Event)
    phase: str = WAITING_FOR_DATABASE
    waiting_reason: str = ""  # the last connection attempt's error while waiting

    def create_pool(self) -> ConnectionPool:
        """The writer pool, not connected yet (`connect` opens it once the database answers).

        Its connections' client-side timeouts come with the DSN (config/settings.py).
        """
        self.pool = ConnectionPool(
            self.settings.dsn, min_size=1, max_size=self.settings.pool_size, open=False,
            name="sinkframe-writer", timeout=30, check=check_pooled_connection,
            kwargs={"prepare_threshold": self.settings.prepare_threshold})
        return self.pool

    def connect(self) -> bool:
        """Wait for the database, open the pool, provision; False when stopped first.

        A database that cannot be reached at start is waited for, as an outage that
        begins later is; one that refuses the login fails (DatabaseRefused).
        Provisioning is idempotent, so a connection lost during it starts it over.
        """
        attempt = 0
        while True:
            self.phase = WAITING_FOR_DATABASE
            if not wait_for_database(self.settings.dsn, self.stop_event, on_waiting=self._note_waiting):
                return False
            if self.pool.closed:
                self.pool.open(wait=False)  # not wait=True: a pool that times out there is closed for good
            self.phase, self.waiting_reason = PROVISIONING, ""
            try:
                self._wait_for_pool()
                if self.stop_event.is_set():
                    return False
                self.provision()
                self.phase = RUNNING
                return True
            except Exception as err:  # noqa: BLE001 - only a lost database is retried; the rest re-raised
                if not _database_unavailable(err):
                    raise
                attempt += 1
                delay = retry_delay(attempt)
                self._note_waiting(first_line(redact_error(err, self.settings.dsn)))
                log.warning("provisioning: the database went away (%s), again in %.0fs: %s",
                            self.settings.redacted_dsn, delay, self.waiting_reason)
                if self.stop_event.wait(delay):
                    return False

    def _wait_for_pool(self, timeout: float = 30.0) -> None:
        """Until the pool has its first connection (a request made before would make it open a second)."""
        deadline = time.monotonic() + timeout
        while not self.pool.get_stats().get("pool_available", 0):
            if time.monotonic() > deadline:
                raise PoolTimeout(f"the writer pool has no connection after {timeout:.0f}s")
            if self.stop_event.wait(0.05):
                return

    def _note_waiting(self, reason: str) -> None:
        self.waiting_reason = reason

    def build(self) -> None:
        for connector in self.connectors:
            mapper = build_mapper(connector, self.registry)
            targets = resolve_targets(connector, mapper)
            parts = transaction_parts(connector, mapper, targets, self.settings.kafka,
                                      alerts_retention=self.settings.alerts_retention,
                                      method=self.settings.write_method)
            router = self.tenant_router(connector)
            writer = BatchWriter(
                self.pool, connector=connector.name, group_id=connector.group_id, topic=connector.topic,
                targets=targets, method=self.settings.write_method,
                dead_letter_table=connector.dead_letter_table if connector.tolerance == "all" else None,
                parts=parts, routed=router is not None, write_timeout=self.settings.write_timeout)
            self.tasks.append(ConnectorTask(connector, mapper, writer, self.settings.kafka, stop=self.stop_event,
                                            router=router, shutdown_timeout=self.settings.shutdown_timeout))

    def tenant_router(self, connector: ConnectorConfig) -> TenantRouter | None:
        if not connector.tenant:
            return None
        return TenantRouter(field=connector.tenant.get("field"), key_prefix=connector.tenant.get("key_prefix"))

    def provision(self) -> None:
        """Create what the connectors write: their tables (schema specs), offsets, dead letters."""
        if self.settings.apply_schema:
            apply_connector_schema(self.pool, self.settings, self.tables(), self.registry)
        for task in self.tasks:
            task.writer.ensure_framework_tables()
            task.stats.alerts_firing.clear()  # provisioning again after a lost connection: count afresh
            task.load_alert_states()
        # The tables as they are, whoever made them: a column the mapper fills that
        # the table lacks fails here, with every problem named, not at the first write.
        with self.pool.connection() as conn:
            check_live_targets(conn, [(task.connector, task.writer.targets) for task in self.tasks])

    def tables(self) -> set[str]:
        return {t.table for task in self.tasks for t in task.writer.targets.values()}

    def start(self) -> None:
        for task in self.tasks:
            task.start()

    def stop(self) -> None:
        self.stop_event.set()

    def wait(self, *, idle_exit: float | None = None, on_tick: Callable[[], None] | None = None) -> None:
        """Block until stopped, a task fails, or (idle_exit) nothing new arrived for that long."""
        last_total, last_change = -1, time.monotonic()
        while not self.stop_event.wait(0.2):
            failed = [t for t in self.tasks if t.failure is not None]
            if failed:
                self.stop()
                break
            if on_tick:
                on_tick()
            if idle_exit is not None:
                total = sum(t.stats.messages for t in self.tasks)
                # Idle only counts once every connector has joined its group: the first
                # assignment can take seconds, and nothing arrives before it.
                waiting = any(t.stats.assignments == 0 or t.stats.state != ConnectorState.RUNNING
                              or t.has_unwritten() for t in self.tasks)
                if total != last_total or waiting:
                    last_total, last_change = total, time.monotonic()
                elif time.monotonic() - last_change >= idle_exit:
                    self.stop()
        self.join_tasks()

    def join_tasks(self) -> None:
        """Wait for the tasks to end, at most the shutdown timeout: a task stuck on the database is left."""
        deadline = time.monotonic() + self.settings.shutdown_timeout
        for task in self.tasks:
            task.thread.join(max(deadline - time.monotonic(), 0))
        stuck = [t.connector.name for t in self.tasks if t.thread.is_alive()]
        if stuck:
            log.error("connectors %s did not stop within the shutdown timeout (%g s); exiting without them: what "
                      "they had not committed is read again on the next start", ", ".join(stuck),
                      self.settings.shutdown_timeout)

    def close(self) -> None:
        if self.pool is not None:
            # Bounded: the pool's workers may be waiting for a database that does not answer.
            self.pool.close(timeout=1.0)

    def failures(self) -> list[BaseException]:
        return [t.failure for t in self.tasks if t.failure is not None]


# How long the pool's check of an idle connection (an empty query) may take before the
# connection is given up. A connection cut off by a partition can look alive to the
# kernel (a proxy in between keeps acknowledging), and the check would wait forever.
POOL_CHECK_SECONDS = 5.0


def check_pooled_connection(conn: psycopg.Connection) -> None:
    """The pool's check before it lends a connection: psycopg_pool's own, with a deadline; none for a
    connection whose transaction has just committed (pipeline/write/session.py)."""
    if SESSIONS.proven_alive(conn):
        return
    with Deadline(conn, POOL_CHECK_SECONDS):
        ConnectionPool.check_connection(conn)


def _database_unavailable(err: BaseException) -> bool:
    """Whether `err` (or what caused it) is the database being unreachable, not a refusal."""
    while err is not None:
        refused = isinstance(err, psycopg.Error) and refusal(err) is not None
        if dberrors.is_retriable(err) and not refused:
            return True
        err = err.__cause__
    return False


def check_database(settings: Settings) -> None:
    """Connect once, with the server's own words on failure (DatabaseRefused: retrying cannot help)."""
    try:
        with psycopg.connect(settings.dsn):
            pass
    except psycopg.Error as err:
        kind = refusal(err)
        error = DatabaseRefused if kind else SinkframeError
        raise error(f"cannot connect to the database ({settings.redacted_dsn}): "
                    f"{f'{kind}: ' if kind else ''}{redact_error(err, settings.dsn)}") from None


def apply_connector_schema(pool: ConnectionPool, settings: Settings, tables: set[str],
                           registry: PluginRegistry) -> None:
    from sinkframe.schema import apply_schema
    from sinkframe.schema.sources import load_specs

    spec = load_specs(settings.schema_paths, registry)
    missing = sorted(tables - spec.table_names())
    if missing:
        raise ConfigError(f"tables {', '.join(missing)} are written by a connector but declared in no "
                          f"schema spec in {', '.join(settings.schema_paths)} nor in the plugins' own; add a spec for them "
                          "(see docs/schema.md) or create them yourself and set SINKFRAME_APPLY_SCHEMA=0")
    with pool.connection() as conn:
        conn.autocommit = True
        try:
            plan = apply_schema(conn, spec, tables=tables, plain_postgres=settings.plain_postgres)
        finally:
            conn.autocommit = False
    for step in plan.steps:
        log.debug("schema: %s", step.description)
    log.info("schema: %d change(s) applied for tables %s", len(plan.steps), ", ".join(sorted(tables)))
    for skipped in plan.skipped:
        log.info("schema: skipped on plain PostgreSQL: %s", skipped)


def tune_garbage_collector() -> None:
    """Fewer, cheaper collections for a process that allocates a batch and frees it whole.

    A batch is tens of thousands of row tuples that live until it is written, so
    CPython's default (a young collection every 700 allocations, promoting rows
    into older generations that then get re-scanned) spends its time on objects
    that are all about to be freed together. Objects from start-up are frozen out
    of collection entirely.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def tune_thread_switching(interval_ms: float) -> None:
    """Hand the interpreter lock over sooner than CPython's default (5 ms) when a thread waits for it.

    Each connector runs two threads: the consumer maps messages (pure Python, it
    never lets go of the lock by itself) and the writer makes a handful of
    database round trips per batch. The writer releases the lock while the server
    works, and when the answer comes it waits until the consumer is made to yield:
    up to the switch interval, after every round trip (the "convoy effect"). The
    database sits idle meanwhile. A shorter interval costs the consumer a few more
    lock hand-overs; docs/benchmark.md has what it measured.
    """
    sys.setswitchinterval(interval_ms / 1000)


def install_signal_handlers(pipeline: Pipeline) -> None:
    def handle(signum, _frame):
        if pipeline.phase == RUNNING:
            log.info("received %s: finishing the batches in flight, then exiting", signal.Signals(signum).name)
        else:
            log.info("received %s while %s: exiting", signal.Signals(signum).name, pipeline.phase)
        pipeline.stop()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def run_connectors(paths: Sequence[Path], settings: Settings, *, plugins_dirs: Sequence[Path] = (),
                   idle_exit: float | None = None, on_created: Callable[[Pipeline], None] | None = None,
                   on_started: Callable[[Pipeline], None] | None = None,
                   on_tick: Callable[[], None] | None = None) -> Pipeline:
    """`sinkframe run`: load, wait for the database, provision, consume until stopped. Raises on failure.

    `on_created(pipeline)` runs before the database is waited for (a monitor can
    say "waiting for the database" then); `on_started` once the connectors run.
    """
    connectors = [c for c in load_connectors(paths) if c.enabled]
    if not connectors:
        raise ConfigError("no enabled connector in the given files")
    pipeline = Pipeline(settings, connectors, PluginRegistry(plugins_dirs))
    pipeline.create_pool()
    try:
        pipeline.build()
        if threading.current_thread() is threading.main_thread():
            install_signal_handlers(pipeline)
        if on_created:
            on_created(pipeline)
        if not pipeline.connect():
            log.info("stopped before the database answered: nothing was consumed")
            return pipeline
        tune_garbage_collector()
        tune_thread_switching(settings.thread_switch_interval)
        pipeline.start()
        log.info("running %d connector(s): %s", len(connectors),
                 ", ".join(f"{c.name} <- {c.topic}" for c in connectors))
        if on_started:
            on_started(pipeline)
        pipeline.wait(idle_exit=idle_exit, on_tick=on_tick)
    finally:
        pipeline.close()
    failures = pipeline.failures()
    if failures:
        raise ConnectorFailed("; ".join(str(f) for f in failures))
    return pipeline
