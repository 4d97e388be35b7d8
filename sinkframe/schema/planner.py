"""Compare a spec with the live database and list, in order, the statements that close the gap.

The plan never destroys data: a live object that differs from the spec in a way
only a destructive statement could fix (a column type, an extra column, a
continuous aggregate's definition) is reported as drift and left alone. Cheap,
safe differences (chunk interval, compression settings, policy intervals, a
missing column or index) are reported as drift *and* fixed by the plan.

Step order: extension; per table: table/columns/keys, hypertable, indexes,
compression, policies; then per continuous aggregate: view, policies. A
continuous aggregate's CREATE is marked `transactional=False` (see apply.py).
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Iterable

import psycopg
from psycopg import sql

from sinkframe.errors import ConfigError, SchemaError
from sinkframe.schema import ddl
from sinkframe.schema.introspect import LiveState, LiveTable, execute, normalize_intervals, read_live_state
from sinkframe.schema.spec import (
    ContinuousAggregateSpec, IndexSpec, KeyColumn, SchemaSpec, TableSpec, canonical_type, constraint_name,
)

log = logging.getLogger(__name__)
CHECK_VIEW = "sinkframe_schema_check"
POLICY_DURATIONS = ("compress_after", "drop_after", "start_offset", "end_offset")  # keys of job configs


@dataclass(frozen=True)
class Step:
    sql: sql.Composable
    description: str
    transactional: bool = True


@dataclass(frozen=True)
class Drift:
    """A live object whose settings differ from the spec, and what apply does about it."""

    object: str
    difference: str
    action: str

    def __str__(self) -> str:
        return f"{self.object}: {self.difference}; {self.action}"


@dataclass
class Plan:
    steps: list[Step] = field(default_factory=list)
    drift: list[Drift] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    plain_postgres: bool = False

    @property
    def empty(self) -> bool:
        return not self.steps

    def as_text(self, conn: psycopg.Connection | None = None) -> str:
        """The steps as an SQL script, each preceded by its description as a comment."""
        parts = []
        for step in self.steps:
            note = "" if step.transactional else " (outside a transaction)"
            parts.append(f"-- {step.description}{note}\n{step.sql.as_string(conn)};\n")
        return "\n".join(parts)


def plan_schema(conn: psycopg.Connection, spec: SchemaSpec, *, tables: set[str] | None = None,
                plain_postgres: bool = False) -> Plan:
    """What apply would do. Leaves a non-autocommit connection as idle as it found it."""
    table_specs, cagg_specs = select_objects(spec, tables)
    was_idle = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    try:
        live = read_live_state(conn, [*table_specs, *cagg_specs])
        needs_timescale = bool(cagg_specs) or any(t.hypertable for t in table_specs.values())
        return _Planner(conn, live, plain_postgres, needs_timescale).plan(table_specs, cagg_specs)
    except psycopg.Error as err:
        raise SchemaError(f"reading the database schema: {err}") from err
    finally:
        if was_idle and not conn.autocommit and not conn.closed:
            conn.rollback()  # only reads happened


def select_objects(spec: SchemaSpec, names: set[str] | None):
    """The tables and continuous aggregates to plan: all, or the named ones plus their dependents."""
    if names is None:
        return dict(spec.tables), dict(spec.continuous_aggregates)
    unknown = sorted(set(names) - spec.object_names())
    if unknown:
        raise ConfigError(f"not declared in the schema specs: {', '.join(unknown)} "
                          f"(declared: {', '.join(sorted(spec.object_names()))})")
    caggs = {n: c for n, c in spec.continuous_aggregates.items() if n in names or c.source in names}
    wanted = set(names) | {c.source for c in caggs.values()}
    return {n: t for n, t in spec.tables.items() if n in wanted}, caggs


def _fmt(value) -> str:
    if isinstance(value, timedelta):
        days, seconds = value.days, value.seconds
        text = f"{days} day{'s' if days != 1 else ''}" if days else ""
        if seconds or not days:
            text += f" {seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
        return text.strip()
    return "none" if value is None else str(value)


def _normal_default(text: str | None) -> str | None:
    if text is None:
        return None
    return re.sub(r"::[a-z ]+(\[\])?", "", text.lower()).replace(" ", "")


class _Planner:
    def __init__(self, conn: psycopg.Connection, live: LiveState, plain_postgres: bool, needs_timescale: bool):
        self.conn = conn
        self.live = live
        # Plain PostgreSQL only when opted in (or nothing needs TimescaleDB) *and* the extension is
        # not installed; otherwise an available, not yet created extension is created by the plan.
        plain_ok = plain_postgres or not needs_timescale
        self.timescale = live.extension_installed or (live.extension_available and not plain_ok)
        if not self.timescale and not plain_ok:
            raise SchemaError(
                "the timescaledb extension is not installed on this PostgreSQL server, so hypertables, "
                "continuous aggregates, compression and retention cannot be created. Install TimescaleDB "
                "(then `CREATE EXTENSION timescaledb` or let apply do it), or opt in to plain PostgreSQL "
                "tables and indexes with SINKFRAME_PLAIN_POSTGRES=1 or --plain-postgres")
        self.result = Plan(plain_postgres=not self.timescale)
        self.intervals: dict[str, timedelta] = {}

    def plan(self, tables: dict[str, TableSpec], caggs: dict[str, ContinuousAggregateSpec]) -> Plan:
        if self.timescale and not self.live.extension_installed:
            self.step(ddl.create_extension(), "create the timescaledb extension")
        live_durations = [job.config.get(key) for job in self.live.jobs.values() for key in POLICY_DURATIONS
                          if isinstance(job.config.get(key), str)]
        self.intervals = normalize_intervals(self.conn, [*self._durations(tables, caggs), *live_durations])
        for table in tables.values():
            self.plan_table(table)
        for cagg in caggs.values():
            self.plan_cagg(cagg)
        return self.result

    # --- helpers -----------------------------------------------------------------------

    def step(self, statement: sql.Composable, description: str, *, transactional: bool = True) -> None:
        self.result.steps.append(Step(statement, description, transactional))

    def drift(self, obj: str, difference: str, action: str) -> None:
        self.result.drift.append(Drift(obj, difference, action))

    def same_interval(self, spec_text: str | None, live_value) -> bool:
        if spec_text is None or live_value is None:
            return spec_text is None and live_value is None
        if isinstance(live_value, str):
            live_value = self.intervals.get(live_value)
        return self.intervals[spec_text] == live_value

    @staticmethod
    def _durations(tables, caggs) -> Iterable[str | None]:
        for t in tables.values():
            if t.hypertable:
                h = t.hypertable
                yield from (h.chunk_time_interval, h.drop_after, h.compression and h.compression.compress_after)
        for c in caggs.values():
            yield from (c.bucket_width, c.drop_after)
            if c.refresh:
                yield from (c.refresh.start_offset, c.refresh.end_offset, c.refresh.schedule_interval)

    # --- tables ------------------------------------------------------------------------

    def plan_table(self, table: TableSpec) -> None:
        live = self.live.relations.get(table.name)
        if live is not None and live.kind not in ("r", "p"):
            self.drift(table.name, "exists but is not a table (a view or foreign table)",
                       "apply does not touch it; rename or drop it to let apply create the table")
            return
        if live is None:
            self.step(ddl.create_table(table), f"create table {table.name}")
        else:
            self.plan_columns(table, live)
            self.plan_keys(table, live)
        if table.hypertable:
            self.plan_hypertable(table, live)
        for index in self._indexes(table):
            self.plan_index(table, index, live)
        if table.hypertable and self.timescale:
            self.plan_compression(table)
            self.plan_retention(table.name, table.hypertable.drop_after, existed=live is not None)

    def _indexes(self, table: TableSpec) -> list[IndexSpec]:
        """The declared indexes; on plain PostgreSQL also the time index a hypertable would have."""
        indexes = list(table.indexes)
        if table.hypertable and not self.timescale:
            time_column = table.hypertable.time_column
            indexes.append(IndexSpec(constraint_name(table.name, time_column, "idx"),
                                     (KeyColumn(time_column, descending=True),)))
        return indexes

    def plan_columns(self, table: TableSpec, live: LiveTable) -> None:
        for column in table.columns:
            found = live.columns.get(column.name)
            where = f"{table.name}.{column.name}"
            if found is None:
                self.drift(where, "column is missing", "apply adds it")
                self.step(ddl.add_column(table.name, column), f"add column {where}")
                continue
            if found.type != canonical_type(column.type):
                self.drift(where, f"type is {found.type}, spec says {column.type}",
                           "apply does not change column types (a rewrite that may fail or lose data); "
                           "ALTER it by hand")
            if column.nullable and not found.nullable:
                self.drift(where, "is NOT NULL, spec says nullable", "apply drops NOT NULL")
                self.step(ddl.drop_not_null(table.name, column.name), f"allow NULL in {where}")
            elif not column.nullable and found.nullable:
                self.drift(where, "allows NULL, spec says NOT NULL",
                           "apply does not add NOT NULL (it fails if NULLs exist); ALTER it by hand")
            if _normal_default(found.default) != _normal_default(column.default):
                self.drift(where, f"default is {found.default or 'none'}, spec says {column.default or 'none'}",
                           "apply sets the spec's default")
                self.step(ddl.set_default(table.name, column.name, column.default), f"set default of {where}")
        declared = {c.name for c in table.columns}
        for name in live.columns:
            if name not in declared:
                self.drift(f"{table.name}.{name}", "column is not in the spec",
                           "apply leaves it (dropping a column loses data)")

    def plan_keys(self, table: TableSpec, live: LiveTable) -> None:
        pk = table.primary_key
        live_pk = live.primary_key
        if pk and live_pk is None:
            self.drift(table.name, "has no primary key", f"apply adds PRIMARY KEY ({', '.join(pk.columns)})")
            self.step(ddl.add_constraint(table.name, pk), f"add primary key to {table.name}")
        elif pk and live_pk[1] != pk.columns:
            self.drift(table.name, f"primary key is ({', '.join(live_pk[1])}), spec says ({', '.join(pk.columns)})",
                       "apply does not replace a primary key; change it by hand")
        for key in table.unique:
            if not live.has_unique(key.columns):
                self.drift(table.name, f"has no unique key on ({', '.join(key.columns)})", "apply adds it")
                self.step(ddl.add_constraint(table.name, key), f"add unique key {key.name} to {table.name}")

    def plan_index(self, table: TableSpec, index, live: LiveTable | None) -> None:
        found = live.indexes.get(index.name) if live else None
        if found is None:
            self.step(ddl.create_index(table.name, index), f"create index {index.name} on {table.name}")
            return
        wanted = tuple((c.name, c.descending, c.effective_nulls_first) for c in index.columns)
        actual = tuple((c.name, c.descending, c.effective_nulls_first) if c else None for c in found.columns)
        if wanted != actual or found.unique != index.unique:
            self.drift(f"index {index.name}", "columns or uniqueness differ from the spec",
                       "apply does not rebuild indexes; DROP INDEX it to let apply recreate it")

    # --- hypertables -------------------------------------------------------------------

    def plan_hypertable(self, table: TableSpec, live: LiveTable | None) -> None:
        hyper = table.hypertable
        if not self.timescale:
            skipped = [f"hypertable {table.name} (time column {hyper.time_column}, "
                       f"chunk_time_interval {hyper.chunk_time_interval})"]
            if hyper.compression:
                skipped.append(f"compression of {table.name}" + (
                    f" with its policy (compress_after {hyper.compression.compress_after})"
                    if hyper.compression.compress_after else ""))
            if hyper.drop_after:
                skipped.append(f"retention policy of {table.name} (drop_after {hyper.drop_after})")
            self.result.skipped.extend(skipped)
            return
        found = self.live.hypertables.get(table.name)
        if found is None:
            if live is not None:
                self.drift(table.name, "is a plain table, spec says hypertable",
                           "apply converts it (create_hypertable with migrate_data, which locks the table "
                           "while it moves existing rows into chunks)")
            self.step(ddl.create_hypertable(table, migrate_data=live is not None),
                      f"make {table.name} a hypertable on {hyper.time_column} "
                      f"(chunks of {hyper.chunk_time_interval})")
            if hyper.partition_column:
                self.step(ddl.add_dimension(table),
                          f"partition {table.name} by {hyper.partition_column} too")
            return
        if found.time_column != hyper.time_column:
            self.drift(table.name, f"is partitioned on {found.time_column}, spec says {hyper.time_column}",
                       "apply cannot change this; recreate the table by hand")
        elif not self.same_interval(hyper.chunk_time_interval, found.chunk_interval):
            self.drift(table.name, f"chunk_time_interval is {_fmt(found.chunk_interval)}, spec says "
                                   f"{hyper.chunk_time_interval}", "apply sets it (for new chunks)")
            self.step(ddl.set_chunk_time_interval(table.name, hyper.chunk_time_interval),
                      f"set chunk interval of {table.name} to {hyper.chunk_time_interval}")
        if (found.partition_column, found.number_partitions) != (hyper.partition_column, hyper.number_partitions):
            self.drift(table.name, f"space partitioning is {found.partition_column or 'none'}"
                                   f"/{found.number_partitions or '-'}, spec says "
                                   f"{hyper.partition_column or 'none'}/{hyper.number_partitions or '-'}",
                       "apply does not change it (only possible on an empty hypertable)")

    def plan_compression(self, table: TableSpec) -> None:
        name, comp = table.name, table.hypertable.compression
        found = self.live.hypertables.get(name)
        if comp is None:
            if found and found.compression_enabled:
                self.drift(name, "compression is enabled but not in the spec",
                           "apply leaves it (disabling needs every chunk decompressed)")
            self._plan_policy(name, "compression", None, None, None)
            return
        if found is None or not found.compression_enabled:
            if found is not None:
                self.drift(name, "compression is not enabled", "apply enables it")
            self.step(ddl.set_compression(name, comp), f"enable compression on {name} "
                      f"(segment by {', '.join(comp.segment_by) or 'nothing'}, "
                      f"order by {', '.join(map(str, comp.order_by)) or 'default'})")
        else:
            wanted_order = [(c.name, c.descending, c.effective_nulls_first) for c in comp.order_by]
            live_order = [(c.name, c.descending, c.effective_nulls_first) for c in found.order_by]
            if found.segment_by != comp.segment_by or (comp.order_by and wanted_order != live_order):
                self.drift(name, f"compression segments by ({', '.join(found.segment_by) or 'nothing'}) ordered by "
                                 f"({', '.join(map(str, found.order_by))}), spec says "
                                 f"({', '.join(comp.segment_by)}) ordered by ({', '.join(map(str, comp.order_by))})",
                           "apply changes the settings (for chunks compressed from now on)")
                self.step(ddl.set_compression(name, comp), f"change compression settings of {name}")
        self._plan_policy(name, "compression", comp.compress_after,
                          lambda: ddl.add_compression_policy(name, comp.compress_after),
                          lambda: ddl.remove_compression_policy(name), key="compress_after",
                          existed=found is not None)

    def plan_retention(self, name: str, drop_after: str | None, *, existed: bool) -> None:
        self._plan_policy(name, "retention", drop_after, lambda: ddl.add_retention_policy(name, drop_after),
                          lambda: ddl.remove_retention_policy(name), key="drop_after", existed=existed)

    def _plan_policy(self, name, kind, wanted, add, remove, *, key=None, existed=True) -> None:
        job = self.live.jobs.get((name, kind))
        if wanted is None:
            if job is not None:
                self.drift(name, f"has a {kind} policy (job {job.job_id}) that is not in the spec",
                           "apply leaves it")
            return
        if job is None:
            if existed:
                self.drift(name, f"has no {kind} policy", f"apply adds one ({key} {wanted})")
            self.step(add(), f"add {kind} policy to {name} ({key} {wanted})")
        elif not self.same_interval(wanted, job.config.get(key)):
            self.drift(name, f"{kind} policy has {key} {job.config.get(key)}, spec says {wanted}",
                       "apply replaces the policy")
            self.step(remove(), f"remove {kind} policy of {name} (job {job.job_id})")
            self.step(add(), f"add {kind} policy to {name} ({key} {wanted})")

    # --- continuous aggregates -----------------------------------------------------------

    def plan_cagg(self, cagg: ContinuousAggregateSpec) -> None:
        if not self.timescale:
            refresh = " with its refresh policy" if cagg.refresh else ""
            refresh += f" and retention (drop_after {cagg.drop_after})" if cagg.drop_after else ""
            self.result.skipped.append(f"continuous aggregate {cagg.name} ({cagg.bucket_width} buckets of "
                                       f"{cagg.source}){refresh}")
            return
        live = self.live.relations.get(cagg.name)
        found = self.live.caggs.get(cagg.name)
        if live is None:
            self.step(ddl.create_continuous_aggregate(cagg),
                      f"create continuous aggregate {cagg.name} ({cagg.bucket_width} buckets of {cagg.source})",
                      transactional=False)
        elif found is None:
            self.drift(cagg.name, "exists but is not a continuous aggregate",
                       "apply does not touch it; drop it to let apply create the continuous aggregate")
            return
        elif not self._cagg_matches(cagg, live, found):
            return
        elif found.materialized_only != cagg.materialized_only:
            self.drift(cagg.name, f"materialized_only is {found.materialized_only}, spec says "
                                  f"{cagg.materialized_only}", "apply sets it")
            self.step(ddl.set_materialized_only(cagg.name, cagg.materialized_only),
                      f"set materialized_only of {cagg.name} to {cagg.materialized_only}")
        self._plan_refresh(cagg, existed=live is not None)
        self.plan_retention(cagg.name, cagg.drop_after, existed=live is not None)

    def _cagg_matches(self, cagg, live: LiveTable, found) -> bool:
        """Report drift of the view's definition; apply never recreates a continuous aggregate."""
        problems = []
        if found.source != cagg.source:
            problems.append(f"aggregates {found.source}, spec says {cagg.source}")
        if list(live.columns) != cagg.column_names:
            missing = [c for c in cagg.column_names if c not in live.columns]
            extra = [c for c in live.columns if c not in cagg.column_names]
            problems.append(f"columns differ (missing: {', '.join(missing) or 'none'}; "
                            f"not in spec: {', '.join(extra) or 'none'}; or in another order)")
        elif self._expected_definition(cagg) not in (None, found.definition):
            problems.append("its query (bucket width, time column or aggregate functions) differs from the spec")
        for problem in problems:
            self.drift(cagg.name, problem,
                       "apply does not recreate continuous aggregates (that drops their materialized "
                       f"data); DROP MATERIALIZED VIEW {cagg.name} and apply again to recreate it")
        return not problems

    def _expected_definition(self, cagg) -> str | None:
        """The spec's query as the server prints it: a temporary view, rolled back at once."""
        try:
            with self.conn.transaction() as tx:
                execute(self.conn, ddl.create_temporary_view(CHECK_VIEW, ddl.continuous_aggregate_query(cagg)))
                definition = execute(self.conn, sql.SQL("SELECT pg_get_viewdef({})").format(
                    ddl.regclass(CHECK_VIEW))).fetchone()[0]
                raise psycopg.Rollback(tx)
        except psycopg.Error as err:
            log.warning("cannot check the definition of %s against the spec: %s", cagg.name, err)
            return None
        return definition

    def _plan_refresh(self, cagg: ContinuousAggregateSpec, *, existed: bool) -> None:
        job = self.live.jobs.get((cagg.name, "refresh"))
        refresh = cagg.refresh

        def add() -> None:
            self.step(ddl.add_refresh_policy(cagg),
                      f"add refresh policy to {cagg.name} (every {refresh.schedule_interval}, from "
                      f"{refresh.start_offset or 'the beginning'} to {refresh.end_offset or 'now'} ago)")

        if refresh is None:
            if job is not None:
                self.drift(cagg.name, f"has a refresh policy (job {job.job_id}) that is not in the spec",
                           "apply leaves it")
            return
        if job is None:
            if existed:
                self.drift(cagg.name, "has no refresh policy", "apply adds one")
            add()
            return
        differences = [
            f"{key} is {_fmt(live_value)}, spec says {wanted or 'none'}"
            for key, wanted, live_value in (
                ("start_offset", refresh.start_offset, job.config.get("start_offset")),
                ("end_offset", refresh.end_offset, job.config.get("end_offset")),
                ("schedule_interval", refresh.schedule_interval, job.schedule_interval))
            if not self.same_interval(wanted, live_value)
        ]
        if differences:
            self.drift(cagg.name, "refresh policy " + ", ".join(differences), "apply replaces the policy")
            self.step(ddl.remove_refresh_policy(cagg.name), f"remove refresh policy of {cagg.name} "
                                                            f"(job {job.job_id})")
            add()
