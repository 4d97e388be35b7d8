"""The batch: what one write commits, and the consumer thread's stages that build it.

`BatchBuilder.add` takes the messages of one `consume()` call through the
consumer side's stages, each taking the previous one's output:

    read_records, unstored   consume: raw columns, less what the database holds  (pipeline/consume/)
    map_records              decode and map: `MappedBatch`                         (sinkframe/mapping/)
    TenantRouter.route       route: rows under tenant role keys                    (pipeline/route.py)
    _accepted                errors.tolerance none: only the records before the first rejected one
    Batch.add                the chunk joins the batch being built

`ConnectorTask` (task.py) hands a due `Batch` to the write stage (pipeline/write/:
encode and write rows, dead letters and offsets in one transaction). Nothing here
does I/O, so it is tested without a broker or a database.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import NamedTuple, Sequence

from sinkframe.errors import SinkframeError
from sinkframe.mapping.base import Mapper
from sinkframe.mapping.batch import MappedBatch, RecordBatch, Rejection, RoleColumns, map_records
from sinkframe.pipeline.consume.positions import PartitionPositions
from sinkframe.pipeline.consume.records import Consumed, read_records, unstored
from sinkframe.pipeline.route import TenantRouter


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that could not become rows, with where it came from and why."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None
    headers: tuple | None
    stage: str
    error_class: str
    error_message: str
    sqlstate: str | None = None

    @property
    def coordinates(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


def dead_letter_for(message, stage: str, error_class: str, reason: str,
                    sqlstate: str | None = None) -> DeadLetter:
    """A dead letter for a consumed message (confluent_kafka.Message or alike)."""
    ts_type, ts = message.timestamp()
    return DeadLetter(message.topic(), message.partition(), message.offset(),
                      ts if ts_type != 0 else None,  # 0 = TIMESTAMP_NOT_AVAILABLE
                      message.key(), message.value(), tuple(message.headers() or ()) or None,
                      stage, error_class, reason, sqlstate)


@dataclass(slots=True)
class MappedChunk:
    """One consume() call's records after the consumer side's stages: what `Batch.add` takes.

    `tenants[i]` is the tenant record i names (routed connectors; empty otherwise).
    """

    consumed: Consumed
    mapped: MappedBatch
    tenants: list[str | None]

    def head(self, end: int) -> "MappedChunk":
        """What came from the records before `end`."""
        return MappedChunk(self.consumed.head(end), self.mapped.head(end), self.tenants[:end])


class Stop(NamedTuple):
    """The first rejected record, when rejections are not tolerated: the connector stops on it."""

    message: object  # the confluent_kafka.Message
    rejection: Rejection


@dataclass
class Batch:
    """What one write commits: rows per role (as columns), dead letters, and offsets.

    `records` holds every record of the batch in consumption order; each role's
    `record_index` points into it, so a row the database refuses is traced to its
    record (and its original message, kept in `sources`, for the dead letter).
    """

    topic: str
    roles: dict[str, RoleColumns]
    records: RecordBatch = field(init=False)
    sources: list = field(default_factory=list)  # the consumed messages behind `records`
    dead_letters: list[DeadLetter] = field(default_factory=list)
    # Routed connectors: the tenant each record names (None: no rows to route), for the
    # writer to check against the registry in the batch's transaction.
    tenants: list[str | None] = field(default_factory=list)
    first_offsets: dict[int, int] = field(default_factory=dict)
    next_offsets: dict[int, int] = field(default_factory=dict)
    message_count: int = 0  # records in this batch, the dead-lettered ones included
    newest_timestamp_ms: int | None = None
    started_at: float | None = None

    def __post_init__(self):
        self.records = RecordBatch(self.topic)

    @classmethod
    def empty(cls, topic: str, widths: dict[str, int], *, routed: bool = False) -> "Batch":
        """An empty batch; a routed one gets its (tenant) roles as they come."""
        return cls(topic, {} if routed else {role: RoleColumns.empty(width) for role, width in widths.items()})

    def age(self) -> float:
        return 0.0 if self.started_at is None else time.monotonic() - self.started_at

    @property
    def row_count(self) -> int:
        return sum(len(c) for c in self.roles.values())

    def origin(self, record: int) -> tuple[int, int]:
        """(partition, offset) of record `record`."""
        return self.records.partitions[record], self.records.offsets[record]

    def __bool__(self) -> bool:
        return self.message_count > 0

    def add(self, chunk: MappedChunk) -> None:
        """Append a chunk's records, rows (record indexes shifted past this batch's), dead letters and offsets."""
        records = chunk.consumed.records
        if not len(records):
            return
        if self.started_at is None:
            self.started_at = time.monotonic()
        base = len(self.records)
        for name in ("values", "keys", "partitions", "offsets", "timestamps_ms"):
            getattr(self.records, name).extend(getattr(records, name))
        self.sources.extend(chunk.consumed.messages)
        self.tenants.extend(chunk.tenants)
        for role, columns in chunk.mapped.roles.items():
            if not len(columns):
                continue
            into = self.roles.get(role)
            if into is None:  # a tenant's role, first seen in this batch
                into = self.roles[role] = RoleColumns.empty(len(columns.columns))
            for column, values in zip(into.columns, columns.columns):
                column.extend(values)
            into.record_index.extend([base + i for i in columns.record_index] if base else columns.record_index)
        messages = chunk.consumed.messages
        self.dead_letters.extend(dead_letter_for(messages[r.index], r.stage, r.error_class, r.reason)
                                 for r in chunk.mapped.rejected)
        for partition, offset in dict(zip(reversed(records.partitions), reversed(records.offsets))).items():
            self.first_offsets.setdefault(partition, offset)
        for partition, offset in dict(zip(records.partitions, records.offsets)).items():
            self.next_offsets[partition] = offset + 1
        newest = max((ts for ts in records.timestamps_ms if ts is not None), default=None)
        if newest is not None and (self.newest_timestamp_ms is None or newest > self.newest_timestamp_ms):
            self.newest_timestamp_ms = newest
        self.message_count += len(records)


class BatchBuilder:
    """Builds the next batch from consumed messages, one consume() call at a time.

    `add(messages)` returns a `Stop` naming the first record rejected when
    rejections are not tolerated (errors.tolerance none): everything before it
    is in the batch, nothing from it on.
    """

    def __init__(self, topic: str, mapper: Mapper, *, positions: PartitionPositions, validate=None,
                 tolerate: bool = True, router: TenantRouter | None = None, fallbacks: Counter | None = None):
        self.topic = topic
        self.mapper = mapper
        self.widths = {role: len(t.columns) for role, t in mapper.targets.items()}
        self._positions = positions
        self._validate = validate
        self._tolerate = tolerate
        self._router = router
        # Records the mapper's fast path left to the per-record path, by reason (the connector's stats).
        self.fallbacks = Counter() if fallbacks is None else fallbacks
        self.batch = self._empty()

    def take(self) -> Batch:
        """The batch built so far; building starts again on an empty one."""
        batch, self.batch = self.batch, self._empty()
        return batch

    def add(self, messages: list) -> Stop | None:
        consumed = unstored(read_records(self.topic, messages), self._positions)
        if not consumed:
            return None
        mapped = self._map(consumed.records)
        if self._router is None:
            chunk = MappedChunk(consumed, mapped, [])
        else:
            routed = self._router.route(consumed.records, mapped)
            chunk = MappedChunk(consumed, routed.mapped, routed.tenants)
        chunk, stop = self._accepted(chunk)
        self.batch.add(chunk)
        return stop

    def _empty(self) -> Batch:
        return Batch.empty(self.topic, self.widths, routed=self._router is not None)

    def _map(self, records: RecordBatch) -> MappedBatch:
        mapped = map_records(self.mapper, records, validate=self._validate)
        if mapped.fallbacks:
            self.fallbacks.update(mapped.fallbacks)
        for role, columns in mapped.roles.items():
            width = self.widths.get(role)
            if len(columns) and len(columns.columns) != width:
                raise SinkframeError(f"mapper plugin {self.mapper.name!r}: map_batch returned role {role!r} with "
                                     f"{len(columns.columns)} columns; its targets declare "
                                     f"{width if width is not None else 'no such role'}")
        return mapped

    def _accepted(self, chunk: MappedChunk) -> tuple[MappedChunk, Stop | None]:
        rejected = chunk.mapped.rejected
        if self._tolerate or not rejected:
            return chunk, None
        first = rejected[0]
        return chunk.head(first.index), Stop(chunk.consumed.messages[first.index], first)
