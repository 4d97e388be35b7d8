"""The batch contract between the framework and a mapper: raw records in, columns out.

Every sink framework we learn from hands its plugins a batch (Connect's
`put(Collection)`, Quix's `write(batch)`, Telegraf's `Write([]Metric)`), because
per-message Python is what a sink spends its time on. Here a mapper receives a
`RecordBatch` (raw value bytes, keys and Kafka coordinates, nothing decoded) and
returns a `MappedBatch`: per target role, the rows as columns, plus the records
it could not map, as data (`Rejection`: index, stage, reason), not exceptions.

`Mapper.map_batch` defaults to `map_each`, which decodes each record with
orjson and calls the per-record `map()`: a plugin that only has `map()` works
unchanged. A plugin with a columnar fast path overrides `map_batch` and sends
whatever its fast path cannot take through `map_each`, so every record gets
exactly the row, or exactly the rejection, that `map()` would give it.
"""
from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

from sinkframe.errors import RecordError
from sinkframe.mapping.base import KafkaRecord
from sinkframe.mapping.decode import decode_json_object

if TYPE_CHECKING:
    from sinkframe.mapping.base import Mapper


@dataclass(slots=True)
class RecordBatch:
    """Consumed records of one topic in consumption order (Kafka order within a partition).

    Parallel lists, one entry per record. `values` are the raw message bytes
    (None for a tombstone); `timestamps_ms` the Kafka timestamps (None when the
    broker has none).
    """

    topic: str
    values: list[bytes | None] = field(default_factory=list)
    keys: list[bytes | None] = field(default_factory=list)
    partitions: list[int] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    timestamps_ms: list[int | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.offsets)

    def append(self, value: bytes | None, key: bytes | None, partition: int, offset: int,
               timestamp_ms: int | None) -> None:
        self.values.append(value)
        self.keys.append(key)
        self.partitions.append(partition)
        self.offsets.append(offset)
        self.timestamps_ms.append(timestamp_ms)

    def record(self, index: int, value: Any) -> KafkaRecord:
        """Record `index` with `value` (its decoded message) for a per-record `map()`."""
        return KafkaRecord(self.topic, self.partitions[index], self.offsets[index],
                           self.timestamps_ms[index], self.keys[index], value)

    def coordinates(self, index: int) -> str:
        return f"{self.topic}[{self.partitions[index]}]@{self.offsets[index]}"

    def head(self, end: int) -> "RecordBatch":
        """The first `end` records."""
        return RecordBatch(self.topic, self.values[:end], self.keys[:end], self.partitions[:end],
                           self.offsets[:end], self.timestamps_ms[:end])

    def take(self, keep: Sequence[int]) -> "RecordBatch":
        """The records at `keep` (ascending)."""
        return RecordBatch(self.topic, *([column[i] for i in keep] for column in (
            self.values, self.keys, self.partitions, self.offsets, self.timestamps_ms)))


@dataclass(frozen=True, slots=True)
class Rejection:
    """A record that did not become rows: its index in the RecordBatch, where and why it failed."""

    index: int
    stage: str  # decode | validate | map (the writer adds `write`)
    error_class: str
    reason: str


@dataclass(slots=True)
class RoleColumns:
    """The rows of one target role, as columns in `Target.columns` order.

    `record_index[k]` is the RecordBatch index of the record row k came from; it
    never decreases, so the rows of a range of records are one slice.
    """

    columns: list[list]
    record_index: list[int]

    @classmethod
    def empty(cls, width: int) -> "RoleColumns":
        return cls([[] for _ in range(width)], [])

    @classmethod
    def from_rows(cls, rows: Sequence[tuple], record_index: list[int], width: int) -> "RoleColumns":
        if not rows:
            return cls.empty(width)
        return cls([list(column) for column in zip(*rows)], record_index)

    def __len__(self) -> int:
        return len(self.record_index)

    def rows(self) -> Iterator[tuple]:
        return zip(*self.columns)

    def slice(self, start: int, end: int) -> "RoleColumns":
        return RoleColumns([column[start:end] for column in self.columns], self.record_index[start:end])

    def take(self, positions: Sequence[int]) -> "RoleColumns":
        """The rows at `positions` (ascending), as a new RoleColumns."""
        pick = itemgetter(*positions) if len(positions) > 1 else None
        if pick is None:
            return RoleColumns([[column[p] for p in positions] for column in self.columns],
                               [self.record_index[p] for p in positions])
        return RoleColumns([list(pick(column)) for column in self.columns], list(pick(self.record_index)))


@dataclass(slots=True)
class MappedBatch:
    """What a mapper made of a RecordBatch: columns per role, and the records it rejected."""

    roles: dict[str, RoleColumns]
    rejected: list[Rejection] = field(default_factory=list)
    # Records a fast path left to the per-record path, by reason (mapping/fastpath.py: FALLBACK_REASONS).
    fallbacks: Counter = field(default_factory=Counter)

    @property
    def row_count(self) -> int:
        return sum(len(c) for c in self.roles.values())

    def head(self, end: int) -> "MappedBatch":
        """What came from the records before `end`: each role's rows are one slice (`record_index` grows)."""
        return MappedBatch({role: c.slice(0, bisect_left(c.record_index, end)) for role, c in self.roles.items()},
                           [r for r in self.rejected if r.index < end], self.fallbacks)


def map_records(mapper: "Mapper", batch: RecordBatch, *, validate=None) -> MappedBatch:
    """Stage decode + map: the mapper's batch path, or record by record when a message schema
    (`validate`) needs each decoded message."""
    if validate is not None:
        return map_each(mapper, batch, validate=validate)
    return mapper.map_batch(batch)


def map_each(mapper: "Mapper", batch: RecordBatch, indices: Iterable[int] | None = None, *,
             validate=None) -> MappedBatch:
    """The per-record path: decode (orjson), validate (optional), `mapper.map()`, for each record.

    `validate(message)` raises RecordError("validate", ...) for a message that
    breaks the connector's message schema. Rows come out in record order.
    """
    roles = list(mapper.targets)
    rows: dict[str, list[tuple]] = {role: [] for role in roles}
    origin: dict[str, list[int]] = {role: [] for role in roles}
    rejected: list[Rejection] = []
    widths = {role: len(t.columns) for role, t in mapper.targets.items()}
    for index in range(len(batch)) if indices is None else indices:
        try:
            value = decode_json_object(batch.values[index])
            if validate is not None:
                validate(value)
            try:
                # A list first: a generator or a bad row must fail here, before any row is kept.
                mapped = [(rows[role], origin[role], _checked(values, widths[role], role))
                          for role, values in mapper.map(batch.record(index, value))]
            except Exception as err:  # any plugin exception makes this record poison
                raise RecordError("map", f"{type(err).__name__}: {err}") from err
        except RecordError as err:
            cause = err.__cause__ or err
            rejected.append(Rejection(index, err.stage, type(cause).__name__, err.reason))
            continue
        for role_rows, role_origin, values in mapped:
            role_rows.append(values)
            role_origin.append(index)
    return MappedBatch({role: RoleColumns.from_rows(rows[role], origin[role], widths[role]) for role in roles},
                       rejected)


def _checked(values: tuple, width: int, role: str) -> tuple:
    # A row of the wrong length would only fail in the database, for the whole batch.
    if len(values) != width:
        raise ValueError(f"the plugin made a row of {len(values)} values for role {role!r}, "
                         f"whose table has {width} columns")
    return values
