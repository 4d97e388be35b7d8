"""BatchWriter: one database transaction per batch, holding rows, dead letters and offsets.

A row the database rejects as data (SQLSTATE class 22 or 23: NUL byte, value
out of range, constraint violation) does not cost the batch its good rows: the
writer splits the batch by record inside the same transaction, each part under
a savepoint, until the bad records are isolated; the rest is written, the bad
ones become dead letters (stage `write`), and rows, dead letters and offsets
still commit together.

A routed connector's batch first locks the registry rows of the tenants it
names (pipeline/write/registrycheck.py); the records of tenants not registered become
dead letters at stage `route` in the same transaction.

Plain targets are written with binary COPY (or, for servers and proxies without
COPY, one `INSERT ... SELECT FROM unnest(...)` per table: one statement, one
parameter per column, so no bind-parameter limit). Keyed targets
(`Target.upsert`) are merged with `INSERT ... ON CONFLICT DO UPDATE`, guarded so
that an older message never overwrites newer data.
"""
from __future__ import annotations

import logging
import re
import threading
from bisect import bisect_left
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping, Protocol, Sequence

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolTimeout

from sinkframe.errors import RecordError, RetriableWriteError, SinkframeError, WriteError
from sinkframe.mapping.base import Target
from sinkframe.mapping.batch import RoleColumns
from sinkframe.pipeline.batch import Batch, DeadLetter
from sinkframe.pipeline.route import split_role
from sinkframe.pipeline.write import dberrors
from sinkframe.pipeline.write.copystage import CopyStage
from sinkframe.pipeline.write.dbconnect import abort_connection
from sinkframe.pipeline.write.deadletter import create_dead_letter_table, insert_dead_letters, record_dead_letter
from sinkframe.pipeline.write.offsets import CREATE_OFFSETS_TABLE, advance_offsets, load_offsets
from sinkframe.pipeline.write.registrycheck import (
    cut_before, first_per_partition, route_dead_letters, unregistered_tenants, without_records,
)
from sinkframe.pipeline.write.session import SESSIONS
from sinkframe.tenants.registry import CREATE_REGISTRY_TABLE, is_tenant_name, schema_for

log = logging.getLogger(__name__)

# Plugin-declared PostgreSQL types end up in SQL text (casts, COPY types), so
# only plain type names are accepted: `double precision`, `varchar(20)`, `text[]`.
_PG_TYPE = re.compile(r"^[a-z][a-z0-9_ ]*(\(\d+(,\s*\d+)?\))?(\[\])?$")
# How the server names the failing row of a COPY, in an error's CONTEXT.
_COPY_LINE = re.compile(r"^COPY .*?, line (\d+)", re.MULTILINE)

# How long a write waits for a pooled connection before giving up (and retrying
# with backoff). Short, so that the consumer thread gets back to polling Kafka
# while the database is down and the group does not expel it.
POOL_WAIT_SECONDS = 5.0
POOL_WAIT_RECONNECTING_SECONDS = 0.2
_IDLE_IN_TRANSACTION = "SELECT set_config('idle_in_transaction_session_timeout', %s, false)"
# Records per range when isolating refused rows (see _Isolation).
ISOLATION_CHUNK = 256


@dataclass
class WriteOutcome:
    """What one write committed."""

    next_offsets: dict[int, int]  # partition -> next offset now stored in the database
    rejected: list[DeadLetter] = field(default_factory=list)  # refused by the database, dead-lettered
    # errors.tolerance none: the first refused record of each partition; nothing
    # from it on was committed in that partition.
    stopped_at: list[DeadLetter] = field(default_factory=list)
    transitions: list = field(default_factory=list)  # alert transitions written (sinkframe.alerts)

class TransactionPart(Protocol):
    """More that a batch writes in its one transaction (alert transitions, ...).

    `write` runs after the rows and dead letters, before the offsets advance;
    `outcome` says which records the database refused (their rows are not in).
    `after_offsets` runs once the offsets' compare-and-set succeeded, just
    before the commit: the place for side effects outside the database (a
    topic), so that a fenced batch has none; a crash before the commit repeats
    them (at least once). `ensure_tables` runs at start with the framework's
    tables; `close` at stop. A part that stages rows by COPY names its stages in
    an optional `copy_stages`, for the writer to create once per connection.
    """

    def ensure_tables(self, conn) -> None: ...

    def write(self, cur, batch: Batch, outcome: WriteOutcome) -> None: ...

    def after_offsets(self, outcome: WriteOutcome) -> None: ...

    def close(self) -> None: ...


def committed_records(batch: Batch, outcome: WriteOutcome) -> Callable[[int], bool]:
    """Whether the rows of record `i` of `batch` were written by the write that gave `outcome`."""
    refused = {(d.partition, d.offset) for d in outcome.rejected}
    cut = {d.partition: d.offset for d in outcome.stopped_at}
    if not refused and not cut:
        return lambda i: True

    def kept(i: int) -> bool:
        partition, offset = batch.origin(i)
        return (partition, offset) not in refused and offset < cut.get(partition, offset + 1)

    return kept


@dataclass(frozen=True)
class ResolvedTarget:
    """A mapper target bound to the table the connector writes it to (in a tenant's schema, if routed)."""

    role: str
    table: str
    target: Target
    schema: str | None = None  # None: the connection's search_path

    @property
    def identifier(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.table) if self.schema else sql.Identifier(self.table)

    @property
    def qualified_name(self) -> str:
        return f"{self.schema}.{self.table}" if self.schema else self.table

    def __post_init__(self):
        for column in self.target.columns:
            if not _PG_TYPE.match(column.pg_type):
                raise WriteError(f"table {self.table}: column {column.name}: unsupported type "
                                 f"{column.pg_type!r} declared by the mapper plugin")


class BatchWriter:
    def __init__(self, pool: ConnectionPool, *, connector: str, group_id: str, topic: str,
                 targets: Mapping[str, ResolvedTarget], method: str = "copy",
                 dead_letter_table: str | None = None, parts: Sequence["TransactionPart"] = (),
                 routed: bool = False, write_timeout: float | None = None):
        self.pool = pool
        self.write_timeout = write_timeout  # seconds one attempt may take (writestage.py enforces it)
        self.connector = connector
        self.group_id = group_id
        self.topic = topic
        self.targets = dict(targets)
        self.method = method
        self.dead_letter_table = dead_letter_table
        self.parts = tuple(parts)
        self.routed = routed  # rows come under `tenant/role` keys, checked against the registry
        self._reconnecting = False  # the last attempt failed as retriable (database unavailable)
        # Keyed targets' stages, by mapper role (a tenant's role shares its base role's): before the
        # statements, which name them.
        self._copy_types = {role: [c.pg_type for c in t.target.columns] for role, t in self.targets.items()}
        self._stages = {role: CopyStage(self._copy_types[role])
                        for role, t in self.targets.items() if t.target.upsert is not None}
        self._statements = {role: self._compose(t) for role, t in self.targets.items()}
        # (fact, statement, parameters) a connection's session is given once: see _prepare_session.
        self._session_setup: list[tuple[str, object, tuple | None]] = []
        if write_timeout is not None:
            timeout = f"{int(write_timeout * 1000)}ms"
            self._session_setup.append((f"idle_in_transaction_session_timeout={timeout}", _IDLE_IN_TRANSACTION,
                                        (timeout,)))
        if self.method == "copy":
            stages = [*self._stages.values(), *(s for part in self.parts for s in getattr(part, "copy_stages", ()))]
            self._session_setup += [(stage.name, stage.create, None) for stage in stages]
        # role key -> (target, statement) of registered tenants. Replaced, never changed in
        # place: the consumer thread reads it too (`resolved`, for the stats).
        self._tenant_targets: dict[str, tuple[ResolvedTarget, sql.Composed]] = {}
        # The connection in use and, once given up, why (give_up_connection, another thread).
        self._watch = threading.Lock()
        self._in_use: psycopg.Connection | None = None
        self._given_up: str | None = None

    def resolved(self, role: str) -> ResolvedTarget:
        """The target of a role key: a mapper role, or (routed) `tenant/role` in the tenant's schema."""
        return self._target(role)[0]

    def _target(self, role: str) -> tuple[ResolvedTarget, sql.Composed]:
        plain = self.targets.get(role)
        if plain is not None:
            return plain, self._statements[role]
        found = self._tenant_targets.get(role)
        if found is None:
            tenant, base = split_role(role)
            if tenant is None or not self.routed or base not in self.targets or not is_tenant_name(tenant):
                raise WriteError(f"connector {self.connector}: no table for role {role!r}")
            plain = self.targets[base]
            target = ResolvedTarget(role, plain.table, plain.target, schema=schema_for(tenant))
            found = (target, self._compose(target))
            self._tenant_targets = {**self._tenant_targets, role: found}
        return found

    def _forget_tenants(self, gone: set[str]) -> None:
        """Drop what was composed for tenants no longer registered (a tenant's name comes from messages)."""
        if any(split_role(role)[0] in gone for role in self._tenant_targets):
            self._tenant_targets = {role: found for role, found in self._tenant_targets.items()
                                    if split_role(role)[0] not in gone}

    # -- statements, composed once --------------------------------------------------
    def _compose(self, resolved: ResolvedTarget) -> sql.Composed:
        target = resolved.target
        table = resolved.identifier
        columns = sql.SQL(", ").join(map(sql.Identifier, target.column_names))
        if target.upsert is None and self.method == "copy":
            return sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(table, columns)
        if target.upsert is not None and self.method == "copy":
            # The rows were COPYed into the stage (CopyStage.stage); this merges and empties it.
            stage = self._stages[split_role(resolved.role)[1]]
            return stage.merge(sql.SQL("INSERT INTO {} AS stored ({}) SELECT * FROM staged").format(table, columns)
                               + self._on_conflict(target))
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

    # -- connections ----------------------------------------------------------------
    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A pooled connection or, after a failure, one of its own if the pool has none.

        After an outage the pool reconnects with a doubling backoff (its next
        attempt can be minutes away after a long outage); a connection made here
        lets the sink resume as soon as the database answers again.
        The connection is watched: `give_up_connection()` (another thread) shuts
        it, and then it is closed, never put back for reuse.
        """
        with self._watch:
            self._given_up = None
        try:
            wait = POOL_WAIT_RECONNECTING_SECONDS if self._reconnecting else POOL_WAIT_SECONDS
            conn, pooled = self.pool.getconn(timeout=wait), True
        except PoolTimeout:
            if not self._reconnecting:
                raise
            conn, pooled = psycopg.connect(self.pool.conninfo, **self.pool.kwargs), False
        with self._watch:
            self._in_use = conn
        try:
            with conn:  # commits or rolls back what is left open, as the pool's own does
                try:
                    yield conn
                except BaseException as err:
                    if _connection_in_doubt(conn, err):
                        # Closed before the rollback: a ROLLBACK on a dead connection would wait
                        # like the statement did, and the pool discards a closed connection.
                        conn.close()
                    raise
            SESSIONS.committed(conn)
        except BaseException:
            SESSIONS.rolled_back(conn)
            raise
        finally:
            with self._watch:
                self._in_use, given_up = None, self._given_up
            if given_up is not None:
                conn.close()  # the pool discards a closed connection and opens a new one
            if pooled:
                self.pool.putconn(conn)
            else:
                conn.close()
            if given_up is not None and not self.pool.closed:
                # The pool's idle connections were opened before the fault too (after a
                # failover or a partition they stay dead): replace them all.
                self.pool.drain()
        # Back to the pool only once it gave a connection: while it is still in its
        # reconnect backoff, every write would first wait POOL_WAIT_SECONDS for it.
        self._reconnecting = not pooled

    def give_up_connection(self, reason: str) -> None:
        """Shut the connection a write or load is using now (from another thread); it errors at once."""
        with self._watch:
            conn = self._in_use
            if conn is None or self._given_up is not None:
                return
            self._given_up = reason
            # Under the lock: the writer thread cannot close the connection meanwhile.
            shut = abort_connection(conn)
        if shut:
            log.warning("connector %s: giving up a database connection: %s", self.connector, reason)

    def stored_offsets(self) -> dict[int, int]:
        """The next offset of each partition stored for this connector's group and topic."""
        try:
            with self.connection() as conn:
                return load_offsets(conn, self.group_id, self.topic)
        except Exception as err:
            classified = self._classify(err)
            self._reconnecting = self._reconnecting or isinstance(classified, RetriableWriteError)
            if isinstance(classified, RetriableWriteError):
                raise RetriableWriteError(f"connector {self.connector}: reading the stored offsets failed, "
                                          f"will retry: {self._why(err)}") from err
            raise WriteError(f"connector {self.connector}: reading the stored offsets failed: "
                             f"{_describe(err)}") from err

    # -- setup ----------------------------------------------------------------------
    def ensure_framework_tables(self) -> None:
        with self.pool.connection() as conn:
            conn.execute(CREATE_OFFSETS_TABLE)
            if self.routed:  # read in every write of a routed batch, even before the first `tenants add`
                conn.execute(CREATE_REGISTRY_TABLE)
            if self.dead_letter_table:
                conn.execute(create_dead_letter_table(self.dead_letter_table))
            for part in self.parts:
                part.ensure_tables(conn)

    # -- the write ------------------------------------------------------------------
    def write(self, batch: Batch, expected: Mapping[int, int | None], *, tolerate: bool = True,
              before_commit: Callable[[list[DeadLetter]], None] | None = None) -> WriteOutcome:
        """Write the batch and advance its offsets atomically, or raise.

        `expected` is what the database holds for each partition before this
        write (the compare-and-set of offsets.advance_offsets).
        Records the database refuses as data are dead-lettered (`tolerate`), or
        (not `tolerate`) each partition is committed only up to its first refused
        record and the outcome's `stopped_at` names them.
        `before_commit(dead_letters)` runs inside the transaction, after
        everything is written and the offsets' compare-and-set succeeded, when
        there are dead letters (the dead-letter topic); so do the parts'
        `after_offsets` (the alerts topic).

        RetriableWriteError: nothing was written, try again later.
        PartitionFenced: another consumer owns a partition now; nothing was written.
        WriteError: anything else (a configuration problem), nothing written.
        """
        try:
            with self.connection() as conn:
                with conn.transaction(), conn.cursor() as cur:
                    self._prepare_session(cur)
                    unrouted = self._unregistered_records(cur, batch)
                    outcome = self._write_routed(conn, cur, batch, unrouted, tolerate)
                    dead = [*batch.dead_letters, *outcome.rejected]
                    if dead and self.dead_letter_table:
                        insert_dead_letters(cur, self.dead_letter_table, self.connector, dead)
                    for part in self.parts:
                        part.write(cur, batch, outcome)
                    advance_offsets(cur, self.group_id, self.topic, expected, outcome.next_offsets)
                    # Only now, past the compare-and-set: a fenced batch sends nothing anywhere.
                    if dead and before_commit is not None:
                        before_commit(dead)
                    for part in self.parts:
                        part.after_offsets(outcome)
        except SinkframeError:  # PartitionFenced, or the dead-letter topic asking for a retry
            raise
        except Exception as err:  # classify by SQLSTATE, keep the driver error as cause
            classified = self._classify(err)
            self._reconnecting = self._reconnecting or isinstance(classified, RetriableWriteError)
            raise classified from err
        return outcome

    # -- tenants ----------------------------------------------------------------------
    def _unregistered_records(self, cur, batch: Batch) -> list[DeadLetter]:
        """Dead letters (stage route) for the records of tenants the registry does not hold now: see
        pipeline/write/registrycheck.py. The first statement of the transaction."""
        gone = unregistered_tenants(cur, batch)
        if not gone:
            return []
        self._forget_tenants(gone)
        letters = route_dead_letters(batch, gone)
        log.warning("connector %s: %d messages name tenants not registered (%s): dead-lettered at stage route",
                    self.connector, len(letters), ", ".join(sorted(gone)))
        return letters

    def _write_routed(self, conn, cur, batch: Batch, unrouted: list[DeadLetter], tolerate: bool) -> WriteOutcome:
        """Write the batch less the records in `unrouted`, which join the outcome's refused records."""
        if not unrouted:
            return self._write_records(conn, cur, batch, tolerate)
        if tolerate:
            outcome = self._write_records(conn, cur, without_records(batch, unrouted), tolerate)
            outcome.rejected = sorted([*unrouted, *outcome.rejected], key=lambda d: (d.partition, d.offset))
            return outcome
        # errors.tolerance none: each partition up to its first unrouted record, then stop.
        first = first_per_partition(unrouted)
        cut = {partition: letter.offset for partition, letter in first.items()}
        outcome = self._write_records(conn, cur, cut_before(batch, cut), tolerate)
        for letter in outcome.stopped_at:  # a refused row before the first unrouted record
            known = first.get(letter.partition)
            if known is None or letter.offset < known.offset:
                first[letter.partition] = letter
        outcome.stopped_at = [first[p] for p in sorted(first)]
        return outcome

    def _prepare_session(self, cur) -> None:
        """What the session keeps between transactions, made once per connection (session.py).

        The idle-in-transaction timeout: a write given up (or cut off by a
        partition) after it updated its offsets row leaves a server session idle
        in its transaction, holding that row's lock, and the retry, on a new
        connection, would wait for it until the server noticed the client was
        gone, which can take hours; the server ends such a transaction after the
        write timeout. And the temporary tables keyed rows are COPYed into.
        """
        conn = cur.connection
        for fact, statement, params in self._session_setup:
            if not SESSIONS.knows(conn, fact):
                cur.execute(statement, params)
                SESSIONS.pending(conn, fact)

    def _write_records(self, conn, cur, batch: Batch, tolerate: bool) -> WriteOutcome:
        try:
            with conn.transaction():  # a savepoint: a poison row rolls back only this
                self._write_rows(cur, batch.roles)
            return WriteOutcome(dict(batch.next_offsets))
        except psycopg.Error as err:
            if not dberrors.is_poison(err):
                raise
            log.info("connector %s: the database refused a batch of %d messages (%s); isolating the bad "
                     "records", self.connector, batch.message_count, _describe(err))
        return _Isolation(self, conn, cur, batch).run(tolerate)

    def _write_rows(self, cur, roles: Mapping[str, RoleColumns]) -> None:
        for role, columns in roles.items():
            if len(columns):
                self._write_role(cur, role, columns)

    def _write_role(self, cur, role: str, columns: RoleColumns) -> None:
        resolved, statement = self._target(role)
        if resolved.target.upsert is not None:
            # Older rows first (gap fillers), then each key's newest: see merge_keyed_rows.
            for part in merge_keyed_rows(resolved.target, list(columns.rows())):
                if not part:
                    continue
                if self.method == "copy":
                    self._stages[split_role(role)[1]].stage(cur, part)
                    cur.execute(statement)
                else:
                    cur.execute(statement, [list(col) for col in zip(*part)])
        elif self.method == "copy":
            # psycopg's C row encoder over the zipped columns measured faster than
            # building Arrow arrays from them and encoding with pgpq (the columns
            # are Python lists, so Arrow would first have to copy them).
            with cur.copy(statement) as copy:
                copy.set_types(self._copy_types[split_role(role)[1]])
                write_row = copy.write_row
                for row in columns.rows():
                    write_row(row)
        else:
            cur.execute(statement, columns.columns)

    def _copies(self, role: str) -> bool:
        """Whether `role` is written with COPY, whose errors name the failing row."""
        return self.resolved(role).target.upsert is None and self.method == "copy"

    def _why(self, err: Exception) -> str:
        """The driver's words, or why the connection was given up when that is what broke it."""
        given_up = self._given_up
        return f"connection given up: {given_up}" if given_up else _describe(err)

    def _classify(self, err: Exception) -> Exception:
        state = dberrors.sqlstate_of(err)
        detail = _describe(err)
        if dberrors.is_retriable(err):
            return RetriableWriteError(f"connector {self.connector}: writing a batch failed, will retry: "
                                       f"{self._why(err)}")
        if dberrors.is_poison(err):
            return RecordError("write", detail, sqlstate=state)
        return WriteError(f"connector {self.connector}: the database refused the batch "
                          f"(SQLSTATE {state}): {detail}")


def _connection_in_doubt(conn: psycopg.Connection, err: BaseException) -> bool:
    """Whether a write that raised `err` may have left `conn` dead or mid-statement.

    A refusal by the server (a data error, a fence) leaves it usable; a broken or
    timed-out connection, or an exception from outside the driver while a statement
    may still be running (a bound on the write), does not.
    """
    if conn.closed or conn.broken:
        return True
    if isinstance(err, (psycopg.OperationalError, psycopg.InterfaceError)):
        return True
    return not isinstance(err, (psycopg.Error, SinkframeError)) and \
        conn.info.transaction_status == psycopg.pq.TransactionStatus.ACTIVE


class _Isolation:
    """Find the records of a batch the database refuses, and write the others.

    Records (those with rows, in consumption order) are written in ranges, each
    under its own savepoint. When a range fails with a data error, the failing
    record is known if the statement was a COPY (the server names the row); it is
    set aside and the rows before and after it are written as two ranges.
    Otherwise (INSERT, upsert) the range is split in two until single bad records
    remain. Ranges start as chunks of ISOLATION_CHUNK records: k bad records among
    n take about n/ISOLATION_CHUNK + 2k attempts with COPY, a few more without.
    """

    def __init__(self, writer: BatchWriter, conn, cur, batch: Batch):
        self.writer, self.conn, self.cur, self.batch = writer, conn, cur, batch
        # rank -> record index in the batch; each role's rows are in record order,
        # so their ranks never decrease and a range of ranks is one slice.
        self.records = sorted({i for columns in batch.roles.values() for i in columns.record_index})
        rank = {record: k for k, record in enumerate(self.records)}
        self.columns: dict[str, RoleColumns] = dict(batch.roles)
        self.ranks = {role: [rank[i] for i in columns.record_index] for role, columns in batch.roles.items()}
        self.refused: dict[int, psycopg.Error] = {}

    def run(self, tolerate: bool) -> WriteOutcome:
        with self.conn.transaction() as attempt:
            # In chunks, so that a failing COPY re-sends at most a chunk, not the batch.
            n = len(self.records)
            ranges = [(lo, min(lo + ISOLATION_CHUNK, n)) for lo in range(0, n, ISOLATION_CHUNK)][::-1]
            while ranges:  # depth first, earlier records first: of two conflicting rows the later loses
                lo, hi = ranges.pop()
                if lo < hi:
                    ranges.extend(self._write_range(lo, hi))
            if not tolerate and self.refused:
                raise psycopg.Rollback(attempt)  # keep nothing; write the good prefix below
        rejected = [self._dead_letter(k) for k in sorted(self.refused)]
        for letter in rejected:
            log.warning("connector %s: %s: write failed, %s: %s", self.writer.connector, letter.coordinates,
                        "dead-lettered" if tolerate else "stopping", letter.error_message)
        if tolerate:
            return WriteOutcome(dict(self.batch.next_offsets), rejected)
        return self._prefix_only(rejected)

    def _write_range(self, lo: int, hi: int) -> list[tuple[int, int]]:
        """Write the records ranked [lo, hi); return the ranges still to write (right one first)."""
        role, start = None, 0
        try:
            with self.conn.transaction():
                for role, ranks in self.ranks.items():
                    start, end = bisect_left(ranks, lo), bisect_left(ranks, hi)
                    if start < end:
                        self.writer._write_role(self.cur, role, self.columns[role].slice(start, end))
            return []
        except psycopg.Error as err:
            if not dberrors.is_poison(err):
                raise
            bad = lo if hi - lo == 1 else self._named_record(err, role, start)
            if bad is None:
                mid = (lo + hi) // 2
                return [(mid, hi), (lo, mid)]
            self.refused[bad] = err
            return [(bad + 1, hi), (lo, bad)]

    def _named_record(self, err: psycopg.Error, role: str, start: int) -> int | None:
        """The rank of the record whose row a COPY error names (`COPY t, line 7`), if it names one."""
        context = getattr(err.diag, "context", None) or ""
        found = _COPY_LINE.search(context)
        if not found or not self.writer._copies(role):
            return None
        index = start + int(found.group(1)) - 1
        return self.ranks[role][index] if 0 <= index < len(self.ranks[role]) else None

    def _prefix_only(self, rejected: Sequence[DeadLetter]) -> WriteOutcome:
        """errors.tolerance none: commit each partition only up to its first refused record."""
        cut: dict[int, int] = {}
        for letter in sorted(rejected, key=lambda d: d.offset):
            cut.setdefault(letter.partition, letter.offset)
        origin = self.batch.origin
        for role, columns in self.columns.items():
            keep = [k for k, i in enumerate(columns.record_index)
                    if origin(i)[1] < cut.get(origin(i)[0], origin(i)[1] + 1)]
            if keep:
                self.writer._write_role(self.cur, role, columns.take(keep))
        next_offsets = dict(self.batch.next_offsets)
        for partition, offset in cut.items():
            if offset > self.batch.first_offsets[partition]:
                next_offsets[partition] = offset
            else:
                del next_offsets[partition]  # nothing of it to commit
        first = {p: min((d for d in rejected if d.partition == p), key=lambda d: d.offset) for p in cut}
        return WriteOutcome(next_offsets, stopped_at=[first[p] for p in sorted(first)])

    def _dead_letter(self, rank: int) -> DeadLetter:
        err = self.refused[rank]
        return record_dead_letter(self.batch, self.records[rank], "write", type(err).__name__, _describe(err),
                                  dberrors.sqlstate_of(err))


def _describe(err: BaseException) -> str:
    """`ClassName: message; detail` (the server's CONTEXT, which names a line of a sub-batch, is left out)."""
    diag = getattr(err, "diag", None)
    primary = diag.message_primary if diag is not None else None
    if not primary:
        return f"{type(err).__name__}: {' '.join(str(err).split())}"
    detail = f"; {diag.message_detail}" if diag.message_detail else ""
    return f"{type(err).__name__}: {primary}{detail}"


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
    value_idx = [i for i in range(len(names)) if i not in key_idx and i != ver and i not in min_idx]
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
        # A filler only matters for a column the newest row leaves empty; without one
        # it would just be a second statement (and could fill a gap with an older value
        # than the newest row's).
        if any(head[i] is None and filler[i] is not None for i in value_idx):
            fillers.append(tuple(filler))
        newest.append(tuple(head))
    return fillers, newest
