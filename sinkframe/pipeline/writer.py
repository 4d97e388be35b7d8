"""BatchWriter: one database transaction per batch, holding rows, dead letters and offsets.

Plain targets are written with binary COPY (or, for servers and proxies without
COPY, one `INSERT ... SELECT FROM unnest(...)` per table: one statement, one
parameter per column, so no bind-parameter limit). Keyed targets
(`Target.upsert`) are merged with `INSERT ... ON CONFLICT DO UPDATE`, guarded so
that an older message never overwrites newer data.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Mapping

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from sinkframe.errors import PartitionFenced, RecordError, RetriableWriteError, WriteError
from sinkframe.mapping.base import Target
from sinkframe.pipeline import dberrors
from sinkframe.pipeline.batch import Batch, DeadLetter
from sinkframe.pipeline.offsets import CREATE_OFFSETS_TABLE, advance_offsets

log = logging.getLogger(__name__)

# Plugin-declared PostgreSQL types end up in SQL text (casts, COPY types), so
# only plain type names are accepted: `double precision`, `varchar(20)`, `text[]`.
_PG_TYPE = re.compile(r"^[a-z][a-z0-9_ ]*(\(\d+(,\s*\d+)?\))?(\[\])?$")

DEAD_LETTER_COLUMNS = (
    "connector", "topic", "partition", "kafka_offset", "kafka_timestamp", "key", "value", "headers",
    "stage", "error_class", "error_message", "sqlstate",
)


def create_dead_letter_table(table: str) -> sql.Composed:
    return sql.SQL("""
CREATE TABLE IF NOT EXISTS {table} (
    id bigserial PRIMARY KEY,
    connector text NOT NULL,
    topic text NOT NULL,
    partition integer NOT NULL,
    kafka_offset bigint NOT NULL,
    kafka_timestamp timestamptz,
    key bytea,
    value bytea,
    headers jsonb,
    stage text NOT NULL,
    error_class text NOT NULL,
    error_message text NOT NULL,
    sqlstate text,
    failed_at timestamptz NOT NULL DEFAULT now()
)""").format(table=sql.Identifier(table))


@dataclass(frozen=True)
class ResolvedTarget:
    """A mapper target bound to the table name the connector writes it to."""

    role: str
    table: str
    target: Target

    def __post_init__(self):
        for column in self.target.columns:
            if not _PG_TYPE.match(column.pg_type):
                raise WriteError(f"table {self.table}: column {column.name}: unsupported type "
                                 f"{column.pg_type!r} declared by the mapper plugin")


class BatchWriter:
    def __init__(self, pool: ConnectionPool, *, connector: str, group_id: str, topic: str,
                 targets: Mapping[str, ResolvedTarget], method: str = "copy",
                 dead_letter_table: str | None = None):
        self.pool = pool
        self.connector = connector
        self.group_id = group_id
        self.topic = topic
        self.targets = dict(targets)
        self.method = method
        self.dead_letter_table = dead_letter_table
        self._statements = {role: self._compose(t) for role, t in self.targets.items()}

    # -- statements, composed once --------------------------------------------------
    def _compose(self, resolved: ResolvedTarget) -> sql.Composed:
        target = resolved.target
        table = sql.Identifier(resolved.table)
        columns = sql.SQL(", ").join(map(sql.Identifier, target.column_names))
        if target.upsert is None and self.method == "copy":
            return sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(table, columns)
        select = sql.SQL("SELECT * FROM unnest({})").format(sql.SQL(", ").join(
            sql.SQL("%s::{}[]").format(sql.SQL(c.pg_type)) for c in target.columns))
        insert = sql.SQL("INSERT INTO {} AS stored ({}) ").format(table, columns) + select
        if target.upsert is None:
            return insert
        return insert + self._on_conflict(target)

    @staticmethod
    def _on_conflict(target: Target) -> sql.Composed:
        up = target.upsert
        version = sql.Identifier(up.version_column)
        newer = sql.SQL("EXCLUDED.{v} >= stored.{v}").format(v=version)
        assignments = []
        for name in target.column_names:
            col = sql.Identifier(name)
            if name in up.key:
                continue
            if name == up.version_column:
                expr = sql.SQL("GREATEST(stored.{c}, EXCLUDED.{c})").format(c=col)
            elif name in up.min_columns:
                expr = sql.SQL("LEAST(stored.{c}, EXCLUDED.{c})").format(c=col)
            else:
                # Newer message: its non-null values win. Older message: it only fills gaps.
                expr = sql.SQL("CASE WHEN {newer} THEN COALESCE(EXCLUDED.{c}, stored.{c}) "
                               "ELSE COALESCE(stored.{c}, EXCLUDED.{c}) END").format(newer=newer, c=col)
            assignments.append(sql.SQL("{} = {}").format(col, expr))
        return sql.SQL(" ON CONFLICT ({}) DO UPDATE SET {}").format(
            sql.SQL(", ").join(map(sql.Identifier, up.key)), sql.SQL(", ").join(assignments))

    # -- setup ----------------------------------------------------------------------
    def ensure_framework_tables(self) -> None:
        with self.pool.connection() as conn:
            conn.execute(CREATE_OFFSETS_TABLE)
            if self.dead_letter_table:
                conn.execute(create_dead_letter_table(self.dead_letter_table))

    # -- the write ------------------------------------------------------------------
    def write(self, batch: Batch, believed: Mapping[int, int | None]) -> None:
        """Write the batch and advance its offsets atomically, or raise.

        RetriableWriteError: nothing was written, try again later.
        PartitionFenced: another consumer owns a partition now; nothing was written.
        RecordError(stage="write"): the database rejected the rows (poison); nothing written.
        WriteError: anything else (a configuration problem), nothing written.
        """
        try:
            with self.pool.connection() as conn:
                with conn.transaction(), conn.cursor() as cur:
                    self._write_rows(cur, batch)
                    self._write_dead_letters(cur, batch.dead_letters)
                    advance_offsets(cur, self.group_id, self.topic, believed, batch.next_offsets)
        except PartitionFenced:
            raise
        except Exception as err:  # classify by SQLSTATE, keep the driver error as cause
            raise self._classify(err) from err

    def _write_rows(self, cur, batch: Batch) -> None:
        for role, rows in batch.rows.items():
            if not rows:
                continue
            resolved = self.targets[role]
            statement = self._statements[role]
            if resolved.target.upsert is not None:
                for part in merge_keyed_rows(resolved.target, rows):
                    if part:
                        cur.execute(statement, [list(col) for col in zip(*part)])
            elif self.method == "copy":
                with cur.copy(statement) as copy:
                    copy.set_types([c.pg_type for c in resolved.target.columns])
                    for row in rows:
                        copy.write_row(row)
            else:
                cur.execute(statement, [list(col) for col in zip(*rows)])

    def _write_dead_letters(self, cur, dead_letters: list[DeadLetter]) -> None:
        if not dead_letters or not self.dead_letter_table:
            return
        cur.executemany(
            sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                sql.Identifier(self.dead_letter_table),
                sql.SQL(", ").join(map(sql.Identifier, DEAD_LETTER_COLUMNS)),
                sql.SQL(", ").join(sql.Placeholder() * len(DEAD_LETTER_COLUMNS))),
            [dead_letter_params(self.connector, d) for d in dead_letters])

    def _classify(self, err: Exception) -> Exception:
        state = dberrors.sqlstate_of(err)
        detail = f"{type(err).__name__}: {str(err).strip()}"
        if dberrors.is_retriable(err):
            return RetriableWriteError(f"connector {self.connector}: writing a batch failed, will retry: {detail}")
        if dberrors.is_poison(err):
            return RecordError("write", detail, sqlstate=state)
        return WriteError(f"connector {self.connector}: the database refused the batch "
                          f"(SQLSTATE {state}): {detail}")


def dead_letter_params(connector: str, d: DeadLetter) -> tuple:
    from datetime import datetime, timezone

    ts = datetime.fromtimestamp(d.timestamp_ms / 1000, timezone.utc) if d.timestamp_ms is not None else None
    headers = None
    if d.headers:
        headers = Jsonb([[k, v.decode("utf-8", "backslashreplace") if isinstance(v, bytes) else v]
                         for k, v in d.headers])
    # Text columns cannot hold NUL bytes; the raw value is kept intact in `value`.
    message = d.message.replace("\x00", "\\x00")
    return (connector, d.topic, d.partition, d.offset, ts, d.key, d.value, headers,
            d.stage, d.error_class, message, d.sqlstate)


def merge_keyed_rows(target: Target, rows: list[tuple]) -> tuple[list[tuple], list[tuple]]:
    """Split keyed rows into (gap_fillers, newest): at most one row per key in each.

    `ON CONFLICT DO UPDATE` cannot touch the same row twice in one statement, and a
    batch often holds several messages of one device. `newest` is each key's newest
    row as it came; `gap_fillers` folds the key's older rows (newest non-null value
    of each column) under the version of the newest of them. Upserting the fillers
    first and then the newest rows gives every column the value of the newest
    message that carries it, whether that message is in this batch or stored.
    """
    up = target.upsert
    names = target.column_names
    ver = names.index(up.version_column)
    key_idx = [names.index(k) for k in up.key]
    min_idx = [names.index(c) for c in up.min_columns]
    by_key: dict[tuple, list[tuple]] = {}
    for row in rows:
        by_key.setdefault(tuple(row[i] for i in key_idx), []).append(row)
    fillers, newest = [], []
    for group in by_key.values():
        if len(group) == 1:
            newest.append(group[0])
            continue
        group.sort(key=lambda r: r[ver], reverse=True)
        head, older = list(group[0]), group[1:]
        filler = list(older[0])
        for row in older[1:]:
            for i, value in enumerate(row):
                if filler[i] is None:
                    filler[i] = value
        for i in min_idx:  # e.g. first_seen: the smallest of the whole group
            smallest = min((r[i] for r in group if r[i] is not None), default=None)
            head[i] = filler[i] = smallest
        fillers.append(tuple(filler))
        newest.append(tuple(head))
    return fillers, newest
