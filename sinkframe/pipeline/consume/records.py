"""Stage consume: the messages of one `consume()` call as raw columns, less what the database holds.

The first stage's output is `Consumed`: a `RecordBatch` (the mapper's input:
value bytes, keys, Kafka coordinates, nothing decoded) and, in step with it,
the messages themselves, which a dead letter copies its headers from. The next
stage (decode and map, `sinkframe.mapping`) takes `Consumed.records`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from sinkframe.mapping.batch import RecordBatch
from sinkframe.pipeline.consume.positions import PartitionPositions


@dataclass(slots=True)
class Consumed:
    """Records as columns, and the confluent_kafka messages they came from (same order, same length)."""

    records: RecordBatch
    messages: list

    def __len__(self) -> int:
        return len(self.records)

    def head(self, end: int) -> "Consumed":
        """The first `end` records."""
        return Consumed(self.records.head(end), self.messages[:end])

    def take(self, keep: Sequence[int]) -> "Consumed":
        """The records at `keep` (ascending)."""
        return Consumed(self.records.take(keep), [self.messages[i] for i in keep])


def read_records(topic: str, messages: list) -> Consumed:
    """The messages as raw columns.

    Built column by column: this runs for every message, and comprehensions
    cost a fraction of a loop with five appends.
    """
    records = RecordBatch(topic, [m.value() for m in messages], [m.key() for m in messages],
                          [m.partition() for m in messages], [m.offset() for m in messages],
                          [ts if kind != 0 else None  # 0 = TIMESTAMP_NOT_AVAILABLE
                           for kind, ts in (m.timestamp() for m in messages)])
    return Consumed(records, messages)


def unstored(consumed: Consumed, positions: PartitionPositions) -> Consumed:
    """`consumed` less the records the database already holds (read again after a consumer reset)."""
    partitions, offsets = consumed.records.partitions, consumed.records.offsets
    # Offsets grow within a partition, so only a partition whose first record
    # here is already stored can hold records to skip.
    first = dict(zip(reversed(partitions), reversed(offsets)))
    floor = {p: positions.skip_below(p) for p in first}
    behind = {p: floor[p] for p, o in first.items() if floor[p] is not None and o < floor[p]}
    if not behind:
        return consumed
    for p in behind:
        positions.note_skipped(p, first[p], sum(1 for q, o in zip(partitions, offsets) if q == p and o < behind[p]))
    return consumed.take([i for i, (p, o) in enumerate(zip(partitions, offsets)) if o >= behind.get(p, o)])
