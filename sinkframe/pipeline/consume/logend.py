"""Starting positions of assigned partitions, and a stored offset past the log end said out loud.

The database may hold an offset beyond a partition's log end: the topic was
deleted and re-created, or truncated, or (the test broker) restarted empty.
Read from there, the partition would wait for records at that offset for ever,
while the records below it (new ones, of the new log) would be skipped as
"already stored" after librdkafka resets the position. So each partition is
checked before its records are written (state CHECKING, positions.py), and the
connector's policy applies (`consumer.stored_offset_past_log_end`):

- `stop` (default): the partition stays paused, with an error naming the topic,
  partition, stored offset and log end; `status` and the metrics show it
  (`ConnectorStats.partitions_past_log_end`). The other partitions go on.
- `earliest`: the partition is read again from the start of its log; the next
  write moves the stored offset back (still a compare-and-set against the
  offset it held). The jump is logged and counted (`ConnectorStats.log_end_restarts`).

Where the log ends: first a ListOffsets request (`get_watermark_offsets`, at
most LIST_TIMEOUT_SECONDS on the consumer thread, once per check). If it says the
log reaches the stored offset, that settles it. If not, the high watermark that
fetch responses carry (`cached=True`) decides, once a fetch has answered since
the seek: some brokers (Tansu, the test broker) answer ListOffsets with the base
offset of the last record batch + 1 rather than the log end, and a cached value
from before the seek may belong to the old log. A record at or after the stored
offset also settles it: the log reaches there.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Iterable

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaException, TopicPartition

from sinkframe.config.connector import ConnectorConfig
from sinkframe.pipeline.consume.positions import PartitionPositions
from sinkframe.pipeline.stats import ConnectorStats

log = logging.getLogger(__name__)

COMMITTED_TIMEOUT_SECONDS = 5.0
LIST_TIMEOUT_SECONDS = 1.0
LIST_RETRY_SECONDS = 5.0
# After a seek, how long until fetch responses have surely updated the cached high
# watermark (a fetch with nothing to return waits fetch.wait.max.ms, 10 ms here).
FETCH_GRACE_SECONDS = 1.0
_EARLIEST_WORDS = {"earliest", "smallest", "beginning"}


@dataclass
class _Check:
    """Where the check of one partition stands."""

    sought_at: float
    high_before: int  # the cached high watermark at the seek: it may belong to the log before
    listed: int | None = None  # the broker's ListOffsets answer, once it gave one
    next_list_at: float = 0.0
    held_back: bool = False  # some of its records were dropped meanwhile: read them again


def describe_offset(offset: int) -> str:
    return {OFFSET_BEGINNING: "earliest", OFFSET_END: "latest"}.get(offset, f"committed {offset}")


class LogEndCheck:
    def __init__(self, consumer: Consumer, connector: ConnectorConfig, positions: PartitionPositions,
                 stats: ConnectorStats):
        self.consumer = consumer
        self.connector = connector
        self.topic = connector.topic
        self.positions = positions
        self.stats = stats
        self._checking: dict[int, _Check] = {}  # the CHECKING partitions

    def committed_or_reset(self, partitions: Iterable[int]) -> dict[int, int]:
        """Where partitions the database holds nothing of start: Kafka's committed offset, else auto.offset.reset."""
        partitions = list(partitions)
        if not partitions:
            return {}
        reset = self.connector.consumer_properties.get("auto.offset.reset", "earliest")
        default = OFFSET_BEGINNING if reset.lower() in _EARLIEST_WORDS else OFFSET_END
        try:
            committed = self.consumer.committed([TopicPartition(self.topic, p) for p in partitions],
                                                timeout=COMMITTED_TIMEOUT_SECONDS)
        except KafkaException as err:
            log.warning("connector %s: reading Kafka's committed offsets failed (%s); starting from %s",
                        self.connector.name, err, describe_offset(default))
            committed = []
        found = {tp.partition: tp.offset for tp in committed if tp.offset >= 0}
        return {p: found.get(p, default) for p in partitions}

    def sought(self, partition: int) -> None:
        """The partition is about to be sought to its stored offset: its check starts."""
        self._checking[partition] = _Check(time.monotonic(), self._cached_high(partition))

    def check(self, partition: int, *, first_offset: int | None = None) -> bool:
        """Settle a CHECKING partition if the broker has said enough.

        `first_offset`: of the first of the partition's records just read. True if
        those records may be kept; False if they are to be dropped (they are read
        again from the stored offset, or the partition restarts or stops).
        """
        check = self._checking.setdefault(partition, _Check(time.monotonic(), -1))
        stored = self.positions.stored[partition]
        if first_offset is not None and first_offset >= stored or self._listed_high(partition, check) >= stored:
            return self._ready(partition, check, first_offset)
        high = self._cached_high(partition)
        fetched_since = high >= 0 and (high != check.high_before
                                       or time.monotonic() - check.sought_at >= FETCH_GRACE_SECONDS)
        if check.listed is None or not fetched_since:
            check.held_back = check.held_back or first_offset is not None
            return False
        if high >= stored:
            return self._ready(partition, check, first_offset)
        self._past_end(partition, stored, high)
        return False

    def _listed_high(self, partition: int, check: "_Check") -> int:
        """The broker's ListOffsets answer for the log end (-1 while it has given none)."""
        now = time.monotonic()
        if check.listed is None and now >= check.next_list_at:
            try:
                check.listed = self.consumer.get_watermark_offsets(TopicPartition(self.topic, partition),
                                                                   timeout=LIST_TIMEOUT_SECONDS)[1]
            except KafkaException as err:
                check.next_list_at = now + LIST_RETRY_SECONDS
                log.info("connector %s: %s[%d]: asking the log end failed (%s); asking again in %gs",
                         self.connector.name, self.topic, partition, err, LIST_RETRY_SECONDS)
        return -1 if check.listed is None else check.listed

    def _ready(self, partition: int, check: "_Check", first_offset: int | None) -> bool:
        # Records dropped before (or none read yet) are read again from the stored offset.
        keep = first_offset is not None and not check.held_back
        self._confirm(partition, seek=not keep)
        return keep

    def _cached_high(self, partition: int) -> int:
        try:
            return self.consumer.get_watermark_offsets(TopicPartition(self.topic, partition), cached=True)[1]
        except KafkaException:
            return -1

    def _confirm(self, partition: int, *, seek: bool) -> None:
        self.positions.confirm(partition)
        self._checking.pop(partition, None)
        if seek:
            self.consumer.seek(TopicPartition(self.topic, partition, self.positions.stored[partition]))

    def _past_end(self, partition: int, stored: int, high: int) -> None:
        self._checking.pop(partition, None)
        where = f"{self.topic}[{partition}]"
        if self.connector.stored_offset_past_log_end == "earliest":
            log.warning("connector %s: %s: the database holds offset %d but the log ends at %d (the topic was "
                        "re-created or truncated); restarting the partition from its earliest offset "
                        "(consumer.stored_offset_past_log_end is earliest)", self.connector.name, where, stored, high)
            self.stats.log_end_restarts += 1
            self.positions.restart(partition)
            self.consumer.seek(TopicPartition(self.topic, partition, OFFSET_BEGINNING))
            return
        log.error("connector %s: %s: stored offset %d is past the end of the log (high watermark %d): the topic "
                  "was re-created or truncated. The partition is stopped; to read it from its earliest offset, "
                  "set consumer.stored_offset_past_log_end: earliest, or correct its row in sinkframe_offsets, "
                  "then restart", self.connector.name, where, stored, high)
        self.positions.stop(partition)
        self.stats.partitions_past_log_end[partition] = {"stored_offset": stored, "high_watermark": high}
        self.consumer.pause([TopicPartition(self.topic, partition)])
