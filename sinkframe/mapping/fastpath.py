"""Columnar fast paths: a mapper maps the records it can take for certain as columns, the rest per record.

Per-message Python is what the sink spends its time on, and the per-record path
spends much of it on objects only it needs: a KafkaRecord per message, a
MappedRow per row, then columns again from the rows. A `ColumnarMapper`
implements `fast_path(batch)`, which builds the columns of the records it can
map for certain and only names every other record (undecodable, unusual, or
simply not the shape it knows). `map_batch` sends those through `map_each`, the
per-record path, and splices their rows into place, so that `map_batch(batch)`
equals `map_each(mapper, batch)` exactly, rows and rejections alike: a fast path
never rejects a record itself, and `map()` stays the reference.
"""
from __future__ import annotations

import logging
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import msgspec
import orjson

from sinkframe.errors import RecordError
from sinkframe.mapping.base import Mapper
from sinkframe.mapping.batch import MappedBatch, RecordBatch, RoleColumns, map_each
from sinkframe.mapping.common import SOURCE_COLUMNS

log = logging.getLogger(__name__)

# What a fast path makes of one record: its data row (all columns but the
# trailing SOURCE_COLUMNS, which come from the batch) and its device_metadata row
# or None; or None for a record it leaves to the per-record path.
OrdinaryRows = Callable[[bytes | None, int | None], "tuple[tuple, tuple | None] | None"]


@dataclass(slots=True)
class FastPathResult:
    """The rows a fast path built, per role, and the records it left to the per-record path (and why)."""

    roles: dict[str, RoleColumns]
    fallback: list[int] = field(default_factory=list)  # RecordBatch indices, ascending
    fallbacks: Counter = field(default_factory=Counter)  # reason -> records (FALLBACK_REASONS)


class ColumnarMapper(Mapper):
    """A mapper whose `map_batch` builds columns itself for the records `fast_path` takes."""

    def fast_path(self, batch: RecordBatch) -> FastPathResult:
        """The columns of the records this mapper can map for certain; the others' indices."""
        raise NotImplementedError

    def map_batch(self, batch: RecordBatch) -> MappedBatch:
        taken = self.fast_path(batch)
        if not taken.fallback:
            return MappedBatch(taken.roles, fallbacks=taken.fallbacks)
        rest = map_each(self, batch, taken.fallback)
        roles = {role: interleaved(columns, rest.roles[role]) for role, columns in taken.roles.items()}
        return MappedBatch(roles, rest.rejected, taken.fallbacks)


def decoded_as_per_record(rows_of: Callable[[dict, int | None], tuple]) -> OrdinaryRows:
    """OrdinaryRows that decode as the per-record path does (orjson), then map with `rows_of`.

    For a mapper whose `map()` is `rows_of(message, record.timestamp_ms)` plus
    the source columns: its fast path then only saves the per-record objects,
    and needs no notion of an ordinary shape, since the code that maps is the same.
    """
    def ordinary_rows(value: bytes | None, kafka_timestamp_ms: int | None):
        message = orjson.loads(value)  # raises for a tombstone or bad JSON: the per-record path rejects it
        return rows_of(message, kafka_timestamp_ms) if type(message) is dict else None

    return ordinary_rows


def take_ordinary(mapper: Mapper, batch: RecordBatch, ordinary_rows: OrdinaryRows, data_role: str,
                  metadata_role: str | None = None) -> FastPathResult:
    """Run `ordinary_rows(value, kafka_timestamp_ms)` over the batch, as columns per role.

    `data_role`'s target ends with SOURCE_COLUMNS; `metadata_role` (if any)
    receives the second row `ordinary_rows` returns, when it is not None.
    """
    width = len(mapper.targets[data_role].columns) - len(SOURCE_COLUMNS)
    data = _Columns(width)
    metadata = _Columns(len(mapper.targets[metadata_role].columns) if metadata_role else 0)
    fallback = []
    fallbacks: Counter = Counter()
    timestamps_ms = batch.timestamps_ms
    for i, value in enumerate(batch.values):
        reason = "shape"  # what a None from ordinary_rows means
        try:
            mapped = ordinary_rows(value, timestamps_ms[i]) if value is not None else None
        except msgspec.ValidationError:  # typed decoding: a field of another type, a key it does not know
            mapped = None
        except (orjson.JSONDecodeError, msgspec.DecodeError):
            mapped, reason = None, "decode"
        except (ValueError, RecordError):  # the mapper's own checks (the per-record path says which)
            mapped, reason = None, "check"
        except Exception:  # noqa: BLE001 - a bug of the fast path: shown once, counted; the record still maps
            _log_bug_once(mapper)
            mapped, reason = None, "bug"
        if mapped is None:
            fallback.append(i)
            fallbacks["tombstone" if value is None else reason] += 1
            continue
        row, metadata_row = mapped
        data.add(row, i)
        if metadata_row is not None:
            metadata.add(metadata_row, i)
    roles = {}
    for role, target in mapper.targets.items():
        if role == data_role:
            roles[role] = _with_source_columns(data.finished(), batch)
        elif role == metadata_role:
            roles[role] = metadata.finished()
        else:
            roles[role] = RoleColumns.empty(len(target.columns))
    return FastPathResult(roles, fallback, fallbacks)


# Why a record left a fast path (sinkframe_fast_path_fallbacks_total's `reason`).
FALLBACK_REASONS = {
    "tombstone": "no value",
    "decode": "not JSON the decoder takes",
    "shape": "not the ordinary message the fast path knows (a key or a type it leaves out)",
    "check": "refused by the mapper's own checks (the per-record path rejects it or maps it otherwise)",
    "bug": "the fast path failed unexpectedly (logged once per mapper)",
}
_bugs_logged: set[type] = set()


def _log_bug_once(mapper: Mapper) -> None:
    """Log the exception being handled, once per mapper class: a fast path's bug, not a record's fault."""
    if type(mapper) not in _bugs_logged:
        _bugs_logged.add(type(mapper))
        log.exception("mapper %s: its fast path failed unexpectedly (a bug); the records it fails on go through "
                      "the per-record path, counted in sinkframe_fast_path_fallbacks_total{reason=\"bug\"}",
                      mapper.name)


class _Columns:
    """Rows gathered into columns a few hundred at a time.

    Row tuples are containers the garbage collector tracks: holding a whole
    batch of them until the end makes collections scan them, only to free them.
    """

    CHUNK = 256

    def __init__(self, width: int):
        self.columns: list[list] = [[] for _ in range(width)]
        self.record_index: list[int] = []
        self._rows: list[tuple] = []

    def add(self, row: tuple, index: int) -> None:
        self._rows.append(row)
        self.record_index.append(index)
        if len(self._rows) == self.CHUNK:
            self._flush()

    def _flush(self) -> None:
        for column, values in zip(self.columns, zip(*self._rows)):
            column.extend(values)
        self._rows.clear()

    def finished(self) -> RoleColumns:
        if self._rows:
            self._flush()
        return RoleColumns(self.columns, self.record_index)


def _with_source_columns(data: RoleColumns, batch: RecordBatch) -> RoleColumns:
    index = data.record_index
    partitions, offsets = batch.partitions, batch.offsets
    data.columns += [[batch.topic] * len(index), [partitions[i] for i in index], [offsets[i] for i in index]]
    return data


def interleaved(fast: RoleColumns, slow: RoleColumns) -> RoleColumns:
    """The rows of both, in record order; they come from disjoint records.

    `MappedBatch.merged` moves every row one by one; here the fast rows move as
    slices between the (usually few) per-record rows, so one odd record in a
    batch does not cost a Python step per row of the batch.
    """
    if not len(slow):
        return fast
    if not len(fast):
        return slow
    fast_index = fast.record_index
    cuts = [bisect_left(fast_index, i) for i in slow.record_index]
    columns = [_spliced(a, b, cuts) for a, b in zip(fast.columns, slow.columns)]
    return RoleColumns(columns, _spliced(fast_index, slow.record_index, cuts))


def _spliced(fast: list, slow: list, cuts: list[int]) -> list:
    # slow[k] goes before fast[cuts[k]]; cuts never decrease.
    out: list = []
    start = 0
    for cut, value in zip(cuts, slow):
        if cut > start:
            out.extend(fast[start:cut])
            start = cut
        out.append(value)
    out.extend(fast[start:])
    return out
