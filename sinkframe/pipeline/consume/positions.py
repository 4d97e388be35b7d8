"""Where each assigned partition stands: what the database holds, what was read, and whether it may be read.

Kafka Connect keeps this in WorkerSinkTask (`lastCommittedOffsets`,
`currentOffsets`); here it is one object owned by the consumer thread, so that
the rules about positions live in one place:

- `stored[p]`: the next offset the database holds for partition p, as far as
  this consumer knows (None: nothing stored yet). It is what the next write's
  compare-and-set expects, and records before it are already written.
- `first_read[p]`: the first offset read since p was assigned: where to go back
  to if the database turns out to hold nothing of p (it lost its last commits).
- `state[p]`: a `PartitionState`. Only a READY partition's records go into
  batches; a partition is LOADING from its assignment (or a rewind) until the
  database has said where it stands, then CHECKING until the broker has said
  that its log still reaches the stored offset.
"""
from __future__ import annotations

import logging
from enum import Enum
from typing import Iterable, Mapping

log = logging.getLogger(__name__)


class PartitionState(str, Enum):
    LOADING = "loading"  # paused until the stored offsets are read (outside the rebalance callback)
    CHECKING = "checking"  # at its stored offset; records wait until the log end is known to be past it
    READY = "ready"
    PAST_LOG_END = "past-log-end"  # stopped: the database holds an offset beyond the log end

    def __str__(self) -> str:
        return self.value


class PartitionPositions:
    def __init__(self, connector: str, topic: str):
        self.connector = connector
        self.topic = topic
        self.stored: dict[int, int | None] = {}
        self.first_read: dict[int, int] = {}
        self.state: dict[int, PartitionState] = {}
        # Partitions restarted from the log's start although the database holds a later
        # offset (the log was re-created): their records are written, not skipped as stored.
        self.restarted: set[int] = set()
        self.skipped_stored = 0  # records read again behind the stored offset, and skipped
        self._warned_at: dict[int, int | None] = {}  # partition -> stored offset last warned about

    # -- states -------------------------------------------------------------------------
    def assign(self, partitions: Iterable[int]) -> None:
        """Newly assigned: nothing is known of them until the database answers."""
        for p in partitions:
            self.stored.pop(p, None)
            self.first_read.pop(p, None)
            self.restarted.discard(p)
            self.state[p] = PartitionState.LOADING

    def revoke(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            self.stored.pop(p, None)
            self.first_read.pop(p, None)
            self.restarted.discard(p)
            self.state.pop(p, None)

    def reload(self, partitions: Iterable[int]) -> None:
        """Believe the database again (after a fence or a write given up): read its offsets anew."""
        for p in partitions:
            if p in self.state:
                self.state[p] = PartitionState.LOADING

    def in_state(self, *states: PartitionState) -> list[int]:
        return sorted(p for p, s in self.state.items() if s in states)

    def ready(self, partition: int) -> bool:
        return self.state.get(partition) == PartitionState.READY

    def loaded(self, stored: Mapping[int, int]) -> dict[int, int | None]:
        """The database's offsets arrived: where each LOADING partition is to be read from.

        A partition the database holds nothing of is re-read from where this
        consumer started on it (its rows, if any were written, were lost with the
        database's last commits); None: from neither (Kafka's committed offset or
        auto.offset.reset decide).
        """
        start = {}
        for p in self.in_state(PartitionState.LOADING):
            self.stored[p] = stored.get(p)
            self.restarted.discard(p)
            start[p] = stored.get(p, self.first_read.get(p))
            # A stored offset is checked against the log end before anything is read.
            self.state[p] = PartitionState.CHECKING if p in stored else PartitionState.READY
        return start

    def confirm(self, partition: int) -> None:
        self.state[partition] = PartitionState.READY

    def stop(self, partition: int) -> None:
        self.state[partition] = PartitionState.PAST_LOG_END

    def restart(self, partition: int) -> None:
        """Read the partition again from the log's start; the next write still expects the stored offset."""
        self.restarted.add(partition)
        self.state[partition] = PartitionState.READY

    # -- positions ----------------------------------------------------------------------
    def expected(self, partitions: Iterable[int]) -> dict[int, int | None]:
        """What a write of these partitions' records expects the database to hold now."""
        return {p: self.stored.get(p) for p in partitions}

    def skip_below(self, partition: int) -> int | None:
        """Records of `partition` before this offset are in the database already (None: none are)."""
        return None if partition in self.restarted else self.stored.get(partition)

    def note_read(self, first_offsets: Mapping[int, int]) -> None:
        for p, offset in first_offsets.items():
            self.first_read.setdefault(p, offset)

    def committed(self, next_offsets: Mapping[int, int]) -> None:
        self.stored.update(next_offsets)
        self.restarted.difference_update(next_offsets)

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
