"""Where each assigned partition stands: what the database holds, and what was read.

Kafka Connect keeps this in WorkerSinkTask (`lastCommittedOffsets`,
`currentOffsets`); here it is one object owned by the consumer thread, so that
the rules about positions live in one place:

- `stored[p]`: the next offset the database holds for partition p, as far as
  this consumer knows (None: nothing stored yet). It is what the next write's
  compare-and-set expects, and records before it are already written.
- `first_read[p]`: the first offset read since p was assigned: where to go back
  to if the database turns out to hold nothing of p (it lost its last commits).
"""
from __future__ import annotations

import logging
from typing import Iterable, Mapping

log = logging.getLogger(__name__)


class PartitionPositions:
    def __init__(self, connector: str, topic: str):
        self.connector = connector
        self.topic = topic
        self.stored: dict[int, int | None] = {}
        self.first_read: dict[int, int] = {}
        self.skipped_stored = 0  # records read again behind the stored offset, and skipped
        self._warned_at: dict[int, int | None] = {}  # partition -> stored offset last warned about

    def assign(self, stored: Mapping[int, int], partitions: Iterable[int]) -> None:
        for p in partitions:
            self.stored[p] = stored.get(p)
            self.first_read.pop(p, None)

    def revoke(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            self.stored.pop(p, None)
            self.first_read.pop(p, None)

    def expected(self, partitions: Iterable[int]) -> dict[int, int | None]:
        """What a write of these partitions' records expects the database to hold now."""
        return {p: self.stored.get(p) for p in partitions}

    def note_read(self, first_offsets: Mapping[int, int]) -> None:
        for p, offset in first_offsets.items():
            self.first_read.setdefault(p, offset)

    def committed(self, next_offsets: Mapping[int, int]) -> None:
        self.stored.update(next_offsets)

    def note_skipped(self, partition: int, first_offset: int, count: int) -> None:
        """Records below the stored offset were read again and skipped: the consumer was reset.

        librdkafka resets an out-of-range position by auto.offset.reset (a topic
        recreated, a broker that lost data); the stored offset says what is written.
        """
        stored = self.stored.get(partition)
        if self._warned_at.get(partition) != stored:
            self._warned_at[partition] = stored
            log.warning("connector %s: %s[%d]@%d is before the stored offset %d (the consumer was reset); "
                        "skipping records the database already holds", self.connector, self.topic,
                        partition, first_offset, stored)
        self.skipped_stored += count

    def reset_to_database(self, stored: Mapping[int, int], assigned: Iterable[int]) -> dict[int, int]:
        """Believe the database again (after a fence); return where each partition must be re-read from.

        A partition the database holds nothing of is re-read from where this
        consumer started on it: its rows, if any were written, were lost with it.
        """
        assigned = list(assigned)
        self.stored = {p: stored.get(p) for p in assigned}
        positions = {p: stored.get(p, self.first_read.get(p)) for p in assigned}
        return {p: o for p, o in positions.items() if o is not None}
