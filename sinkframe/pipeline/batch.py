"""A batch: rows per target role, dead letters, and the Kafka positions they cover."""
from __future__ import annotations

import time
from dataclasses import dataclass, field


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
    message: str
    sqlstate: str | None = None

    @property
    def coordinates(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


@dataclass
class Batch:
    roles: tuple[str, ...]
    rows: dict[str, list[tuple]] = field(init=False)
    # For each row, the offset of the record it came from (same index as `rows`),
    # so that a row the database rejects can be traced back to its record.
    origins: dict[str, list[tuple[int, int]]] = field(init=False)
    # The consumed messages that produced rows, kept until the batch is written:
    # a record the database rejects is dead-lettered with its original bytes.
    sources: list = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    first_offsets: dict[int, int] = field(default_factory=dict)
    next_offsets: dict[int, int] = field(default_factory=dict)
    messages: int = 0
    newest_timestamp_ms: int | None = None
    started_at: float | None = None

    def __post_init__(self):
        self.rows = {role: [] for role in self.roles}
        self.origins = {role: [] for role in self.roles}

    def note_message(self, partition: int, offset: int, timestamp_ms: int | None) -> None:
        if self.started_at is None:
            self.started_at = time.monotonic()
        self.first_offsets.setdefault(partition, offset)
        self.next_offsets[partition] = offset + 1
        self.messages += 1
        if timestamp_ms is not None and (self.newest_timestamp_ms is None or timestamp_ms > self.newest_timestamp_ms):
            self.newest_timestamp_ms = timestamp_ms

    def age(self) -> float:
        return 0.0 if self.started_at is None else time.monotonic() - self.started_at

    @property
    def row_count(self) -> int:
        return sum(len(rows) for rows in self.rows.values())

    def __bool__(self) -> bool:
        return self.messages > 0
