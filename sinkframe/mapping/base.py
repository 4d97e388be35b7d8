"""The contract between the framework and a device-type mapper plugin.

A mapper is one class: a `name`, a JSON Schema for its own config, the tables it
writes (`targets`) and a pure `map(record)` that turns one decoded message into
rows. It does no I/O, so it can be tested without a broker or a database.

The framework calls `map_batch(RecordBatch)` (sinkframe.mapping.batch); its
default runs `map()` on each record, and a mapper with a columnar fast path
overrides it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Iterable, Mapping, NamedTuple

if TYPE_CHECKING:
    from sinkframe.mapping.batch import MappedBatch, RecordBatch


class KafkaRecord(NamedTuple):
    """One consumed message, already decoded from JSON, with its Kafka coordinates.

    A NamedTuple rather than a frozen dataclass: one is built per message, and a
    tuple is several times cheaper to build.
    """

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: Any

    @property
    def coordinates(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


@dataclass(frozen=True, slots=True)
class Column:
    """A column a mapper fills: its name and PostgreSQL type (used for binary COPY)."""

    name: str
    pg_type: str


@dataclass(frozen=True, slots=True)
class Upsert:
    """How rows for a keyed table are merged instead of appended.

    `version_column` decides which row is newer: a row only overwrites the stored
    one when its version is >= the stored version, so an out-of-order (older)
    message never overwrites newer data. NULLs in a newer row keep the stored
    value. `min_columns` keep the smallest value ever seen (e.g. first_seen).
    """

    key: tuple[str, ...]
    version_column: str
    min_columns: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Target:
    """A table a mapper writes, under a role name the connector YAML can remap."""

    default_table: str
    columns: tuple[Column, ...]
    upsert: Upsert | None = None

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


class MappedRow(NamedTuple):
    """One row for the target with role `role`, values in `Target.columns` order."""

    role: str
    values: tuple


class Mapper:
    """Base class of mapper plugins. Subclass it and set the class attributes.

    Raise `ValueError` (or `KeyError`/`TypeError`) from `map` for a message that
    cannot be mapped; the framework turns it into a dead letter naming the record.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    config_schema: ClassVar[Mapping[str, Any]] = {"type": "object", "additionalProperties": False}
    targets: ClassVar[Mapping[str, Target]]
    # The spec files (docs/schema.md) of the tables it writes, shipped with the plugin (package data,
    # or files next to it). A table no project spec declares is provisioned from them
    # (sinkframe.schema.sources); a project's own spec of a table wins.
    table_specs: ClassVar[tuple[Path, ...]] = ()

    def __init__(self, config: Mapping[str, Any] | None = None):
        self.config = dict(config or {})

    def map(self, record: KafkaRecord) -> Iterable[MappedRow]:
        raise NotImplementedError

    def map_batch(self, batch: "RecordBatch") -> "MappedBatch":
        """Map a batch of raw records: by default, decode each and call `map()` on it.

        Override it for a columnar fast path; send the records it cannot take
        through `sinkframe.mapping.batch.map_each`, which gives each one exactly
        what `map()` gives it.
        """
        from sinkframe.mapping.batch import map_each

        return map_each(self, batch)
