"""ConnectorTask: one consumer thread per connector.

Its loop is the whole pipeline for one topic:
poll -> decode -> validate -> map -> add to batch -> (batch full or old enough)
-> write rows, dead letters and offsets in one transaction -> commit offsets to
Kafka for lag tools.

A record that fails a stage is poison: with `errors.tolerance: all` it becomes a
dead letter (table and/or topic) and the stream goes on; with `none` the
connector writes what came before it and stops, naming the record.

While the database is unavailable the task keeps its batch, pauses fetching (so
memory stays bounded by one batch plus librdkafka's queue) and keeps calling
`consume()`, which serves rebalance callbacks and keeps this member in the
group however long the outage lasts.

Only this thread touches the consumer and the batch. Rebalance callbacks run
inside `consume()`, on this thread, between writes; so a revocation can never
interrupt a write. It drops the unwritten batch, and whoever owns the partitions
next starts from the offsets stored in the database.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Mapping

from confluent_kafka import OFFSET_INVALID, Consumer, KafkaError, KafkaException, TopicPartition

from sinkframe.config.connector import ConnectorConfig
from sinkframe.errors import ConnectorFailed, PartitionFenced, RecordError, RetriableWriteError
from sinkframe.mapping.base import KafkaRecord, Mapper
from sinkframe.pipeline.batch import Batch
from sinkframe.pipeline.deadletter import DeadLetterProducer, dead_letter_for
from sinkframe.pipeline.decode import decode_json_object
from sinkframe.pipeline.stats import ConnectorStats
from sinkframe.pipeline.validation import MessageValidator
from sinkframe.pipeline.writer import BatchWriter, WriteOutcome

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 5.0  # the database is retried at least this often while it is down

# librdkafka defaults for a sink (each can be overridden; docs/reliability.md):
# - the prefetch queue bounded below librdkafka's (64 MB, 100k messages per
#   partition): with a batch of max_rows messages held in Python, this is the rest
#   of what a backlog can occupy;
# - fetch.queue.backoff.ms: once a fetch overshoots that bound librdkafka waits
#   this long before fetching again; its default (1000 ms) left the sink idle for
#   two thirds of the time in the benchmark (docs/benchmark.md);
# - fetch.wait.max.ms: how long the broker may hold a fetch waiting for data.
#   A message can wait that long under light load; with 10 ms (and batches of
#   at most 100 ms) p99 end-to-end latency at 20k msgs/s fell from 1.12 s to
#   0.69 s in the benchmark, at the price of more empty fetches when idle.
CONSUMER_DEFAULTS = {
    "queued.max.messages.kbytes": "16384",
    "queued.min.messages": "20000",
    "fetch.max.bytes": "16777216",
    "fetch.queue.backoff.ms": "20",
    "fetch.wait.max.ms": "10",
}


def backoff_seconds(attempt: int) -> float:
    """Wait before retry `attempt` (1, 2, ...) against an unavailable database: 0.5 s doubling."""
    return min(0.5 * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS)


def consumer_properties(base: Mapping[str, str], connector: ConnectorConfig) -> dict[str, str]:
    """librdkafka settings: defaults, process-wide ones, the connector's own, then what we require."""
    props = {
        "auto.offset.reset": "earliest",  # a new group starts at the beginning, as Connect sinks do
        "client.id": f"sinkframe-{connector.name}",
        **CONSUMER_DEFAULTS,
        **base,
        **connector.consumer_properties,
        "group.id": connector.group_id,
        # Offsets are stored in the database with the rows; Kafka commits are only a mirror.
        "enable.auto.commit": "false",
        "enable.auto.offset.store": "false",
    }
    return props


class ConnectorTask:
    def __init__(self, connector: ConnectorConfig, mapper: Mapper, writer: BatchWriter,
                 kafka: Mapping[str, str], *, stop: threading.Event | None = None,
                 db_offsets: Callable[[], dict[int, int]] | None = None):
        self.connector = connector
        self.mapper = mapper
        self.writer = writer
        self.kafka = consumer_properties(kafka, connector)
        self.stop_event = stop or threading.Event()
        self.stats = ConnectorStats(connector.name, connector.topic)
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self.run, name=f"connector-{connector.name}", daemon=True)
        self._consumer: Consumer | None = None
        self._believed: dict[int, int | None] = {}  # partition -> next offset we know the DB holds
        # partition -> first offset read since it was assigned: where to go back to if
        # the database turns out to hold nothing of it (it lost its last commits).
        self._first_read: dict[int, int] = {}
        self._skipping: dict[int, int | None] = {}  # partition -> stored offset last warned about
        self._batch = self._new_batch()
        self._batch_dropped = False
        self._max_wait = connector.max_wait_ms / 1000
        self._load_db_offsets = db_offsets or writer.stored_offsets
        self._validator = MessageValidator(connector.message_schema) if connector.message_schema else None
        self._dead_letter_topic: DeadLetterProducer | None = None
        self.skipped_stored = 0  # records read again behind the stored offset, and skipped

    # -- lifecycle ------------------------------------------------------------------
    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()

    def has_unwritten(self) -> bool:
        """Whether messages were consumed that are not written yet."""
        return bool(self._batch)

    def run(self) -> None:
        try:
            if self.connector.tolerance == "all" and self.connector.dead_letter_topic:
                self._dead_letter_topic = DeadLetterProducer(
                    self.kafka, topic=self.connector.dead_letter_topic, connector=self.connector.name)
            self._consumer = Consumer(self.kafka, logger=logging.getLogger("sinkframe.kafka"))
            self._consumer.subscribe([self.connector.topic], on_assign=self._on_assign,
                                     on_revoke=self._on_revoke, on_lost=self._on_revoke)
            self.stats.state = "running"
            while not self.stop_event.is_set():
                self._poll()
                if self._batch and (self._batch.messages >= self.connector.max_rows
                                    or self._batch.age() >= self._max_wait):
                    self._flush()
            self.stats.state = "stopping"
            self._flush()  # write what is in flight before leaving
            self.stats.state = "stopped"
        except BaseException as err:  # the runner reports it and stops the process
            self.failure = err
            self.stats.state = "failed"
            log.error("connector %s stopped: %s", self.connector.name, err)
        finally:
            if self._consumer is not None:
                try:
                    self._consumer.close()
                except (KafkaException, RuntimeError) as err:
                    log.warning("connector %s: closing the consumer: %s", self.connector.name, err)
            if self._dead_letter_topic is not None:
                self._dead_letter_topic.close()

    # -- consuming ------------------------------------------------------------------
    def _poll(self) -> None:
        remaining = self._max_wait - self._batch.age() if self._batch else self._max_wait
        timeout = min(max(remaining, 0.005), 0.25)
        wanted = max(1, min(self.connector.max_rows - self._batch.messages, 10_000))
        for message in self._consumer.consume(num_messages=wanted, timeout=timeout):
            error = message.error()
            if error is not None:
                self._on_kafka_error(error)
                continue
            self._add(message)

    def _on_kafka_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._PARTITION_EOF:
            return
        if error.fatal():
            raise ConnectorFailed(f"connector {self.connector.name}: fatal Kafka error: {error.str()}")
        log.warning("connector %s: Kafka: %s", self.connector.name, error.str())

    def _add(self, message) -> None:
        partition, offset = message.partition(), message.offset()
        if offset < (self._believed.get(partition) or 0):
            self._skip_stored(message)
            return
        ts_type, ts = message.timestamp()
        timestamp_ms = ts if ts_type != 0 else None  # 0 = TIMESTAMP_NOT_AVAILABLE
        batch = self._batch
        try:
            value = decode_json_object(message.value())
            if self._validator is not None:
                self._validator.validate(value)
            record = KafkaRecord(message.topic(), partition, offset, timestamp_ms, message.key(), value)
            try:
                mapped = self.mapper.map(record)
                if not isinstance(mapped, (list, tuple)):
                    mapped = list(mapped)  # a generator must fail here, not half-way into the batch
            except Exception as err:  # any plugin exception makes this record poison
                raise RecordError("map", f"{type(err).__name__}: {err}") from err
            rows, origins = batch.rows, batch.origins
            for role, values in mapped:
                rows[role].append(values)
                origins[role].append((partition, offset))
            if mapped:
                batch.sources.append(message)  # for a dead letter, should the database refuse its rows
        except RecordError as err:
            self._poison(message, err)
        batch.note_message(partition, offset, timestamp_ms)

    def _skip_stored(self, message) -> None:
        """A record the database already holds: the consumer was reset behind the stored offset.

        librdkafka resets an out-of-range position by auto.offset.reset (a topic
        recreated, a broker that lost data); the stored offset says what is written.
        """
        if self._skipping.get(message.partition()) != self._believed.get(message.partition()):
            self._skipping[message.partition()] = self._believed.get(message.partition())
            log.warning("connector %s: %s[%d]@%d is before the stored offset %d (the consumer was reset); "
                        "skipping records the database already holds", self.connector.name, message.topic(),
                        message.partition(), message.offset(), self._believed.get(message.partition()))
        self.skipped_stored += 1

    def _poison(self, message, err: RecordError) -> None:
        where = f"{message.topic()}[{message.partition()}]@{message.offset()}"
        cause = err.__cause__ or err
        self.stats.errors_by_stage[(err.stage, type(cause).__name__)] += 1
        if self.connector.tolerance == "none":
            # Commit the good records before this one, then stop: nothing past the
            # last good record is committed, and the bad one is re-read after a fix.
            self._flush()
            raise ConnectorFailed(f"connector {self.connector.name}: {where}: {err.stage} failed: "
                                  f"{err.reason} (errors.tolerance is none)")
        log.warning("connector %s: %s: %s failed, dead-lettered: %s",
                    self.connector.name, where, err.stage, err.reason)
        self._batch.dead_letters.append(
            dead_letter_for(message, err.stage, type(cause).__name__, err.reason, err.sqlstate))

    # -- writing --------------------------------------------------------------------
    def _flush(self) -> None:
        batch = self._batch
        if not batch:
            return
        self._batch_dropped = False
        for partition, offset in batch.first_offsets.items():
            self._first_read.setdefault(partition, offset)
        started = time.monotonic()
        attempt = 0
        while True:
            try:
                outcome = self.writer.write(
                    batch, {p: self._believed.get(p) for p in batch.next_offsets},
                    tolerate=self.connector.tolerance == "all",
                    before_commit=self._dead_letter_topic.send if self._dead_letter_topic else None)
                break
            except RetriableWriteError as err:
                attempt += 1
                self.stats.write_retries += 1
                if not self._wait_for_database(err, attempt):
                    self._resume_if_paused()  # the next batch finds out whether the database is back
                    return  # stopping, or a rebalance took the batch's partitions
            except PartitionFenced as err:
                self.stats.fenced += 1
                log.warning("connector %s: %s", self.connector.name, err)
                self._rewind_to_database()
                self._resume_if_paused()
                return
        self._resume_if_paused()
        elapsed = time.monotonic() - started
        self._believed.update(outcome.next_offsets)
        self._commit_to_kafka(outcome.next_offsets)
        self._record(batch, outcome, elapsed)
        self._batch = self._new_batch()
        if outcome.stopped_at:
            raise ConnectorFailed("; ".join(
                f"connector {self.connector.name}: {d.coordinates}: write failed: {d.message}"
                f"{f' (SQLSTATE {d.sqlstate})' if d.sqlstate else ''}" for d in outcome.stopped_at)
                + " (errors.tolerance is none; nothing from that record on was committed)")

    def _record(self, batch: Batch, outcome: WriteOutcome, elapsed: float) -> None:
        for letter in outcome.rejected + outcome.stopped_at:
            self.stats.errors_by_stage[("write", letter.error_class)] += 1
        refused = {(d.partition, d.offset) for d in outcome.rejected}
        cut = {d.partition: d.offset for d in outcome.stopped_at}
        rows = {}
        for role, origins in batch.origins.items():
            if refused or cut:
                kept = sum(1 for o in origins if o not in refused and o[1] < cut.get(o[0], o[1] + 1))
            else:
                kept = len(origins)
            if kept:
                rows[self.writer.targets[role].table] = kept
        self.stats.record_batch(
            messages=batch.messages, rows=rows, dead_letters=len(batch.dead_letters) + len(outcome.rejected),
            seconds=elapsed, newest_ms=batch.newest_timestamp_ms, next_offsets=outcome.next_offsets)
        log.debug("connector %s: wrote %d messages (%d rows, %d dead letters) in %.3fs", self.connector.name,
                  batch.messages, sum(rows.values()), len(batch.dead_letters) + len(outcome.rejected), elapsed)

    def _wait_for_database(self, err: RetriableWriteError, attempt: int) -> bool:
        """Back off while the database is unavailable; keep the consumer alive but paused.

        Pausing keeps memory bounded (nothing more is fetched) while polling keeps
        this member in the group. Returns False when the batch must be abandoned.
        """
        delay = backoff_seconds(attempt)
        log.warning("%s (attempt %d, next in %.1fs)", err, attempt, delay)
        self.stats.state = "waiting-for-database"
        if not self.stats.paused:
            self._consumer.pause(self._consumer.assignment())
            self.stats.paused = True
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline:
            if self.stop_event.is_set():
                log.warning("connector %s: stopping while the database is unavailable; %d messages "
                            "not written will be read again on the next start",
                            self.connector.name, self._batch.messages)
                return False
            # Serves rebalance callbacks and counts as a poll for max.poll.interval.ms.
            self._unread(self._consumer.consume(num_messages=100, timeout=0.1))
            if self._batch_dropped:
                return False
        return True

    def _unread(self, messages) -> None:
        """Give back messages delivered while paused (none are expected): pause and seek to them."""
        first: dict[int, int] = {}
        for message in messages:
            if message.error() is None:
                first.setdefault(message.partition(), message.offset())
        if first:
            tps = [TopicPartition(self.connector.topic, p, o) for p, o in first.items()]
            self._consumer.pause(tps)
            for tp in tps:
                self._consumer.seek(tp)

    def _resume_if_paused(self) -> None:
        if self.stats.paused:
            self._consumer.resume(self._consumer.assignment())
            self.stats.paused = False
        self.stats.state = "running"

    def _commit_to_kafka(self, next_offsets: Mapping[int, int]) -> None:
        offsets = [TopicPartition(self.connector.topic, p, o) for p, o in next_offsets.items()]
        try:
            self._consumer.commit(offsets=offsets, asynchronous=True)
        except KafkaException as err:  # the database holds the truth; this is only for lag tools
            log.info("connector %s: Kafka offset commit failed (harmless): %s", self.connector.name, err)

    def _new_batch(self) -> Batch:
        return Batch(tuple(self.writer.targets))

    # -- positions ------------------------------------------------------------------
    def _stored_offsets_retrying(self) -> dict[int, int]:
        attempt = 0
        while True:
            try:
                return self._load_db_offsets()
            except Exception as err:  # noqa: BLE001 - database unavailable: wait, as for writes
                attempt += 1
                if self.stop_event.is_set():
                    raise ConnectorFailed(f"connector {self.connector.name}: stopping before the "
                                          "stored offsets could be read") from err
                delay = backoff_seconds(attempt)
                log.warning("connector %s: reading stored offsets failed (attempt %d, next in %.1fs): %s",
                            self.connector.name, attempt, delay, err)
                self.stats.state = "waiting-for-database"
                time.sleep(delay)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        stored = self._stored_offsets_retrying()
        for tp in partitions:
            # No stored offset: fall back to Kafka's committed offset, then auto.offset.reset.
            tp.offset = stored.get(tp.partition, OFFSET_INVALID)
            self._believed[tp.partition] = stored.get(tp.partition)
            self._first_read.pop(tp.partition, None)
        consumer.assign(partitions)
        self.stats.assignments += 1
        if self.stats.paused:  # still waiting for the database: fetch nothing new meanwhile
            consumer.pause(partitions)
        self.stats.assigned = tuple(sorted(tp.partition for tp in consumer.assignment()))
        self.stats.committed_offsets.update({tp.partition: stored[tp.partition] for tp in partitions
                                             if tp.partition in stored})
        self.stats.state = "running"
        log.info("connector %s: assigned %s", self.connector.name,
                 ", ".join(f"{tp.topic}[{tp.partition}]@{'stored ' + str(tp.offset) if tp.offset >= 0 else 'committed/earliest'}"
                           for tp in partitions) or "nothing")

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        revoked = {tp.partition for tp in partitions}
        if self._batch and revoked & set(self._batch.next_offsets):
            # The new owner re-reads these records from the stored offsets; records of
            # partitions we keep (cooperative rebalancing) are re-read by us.
            log.info("connector %s: partitions %s revoked; dropping %d unwritten messages",
                     self.connector.name, sorted(revoked), self._batch.messages)
            self._rewind({p: o for p, o in self._batch.first_offsets.items() if p not in revoked})
        for p in revoked:
            self._believed.pop(p, None)
            self._first_read.pop(p, None)
        self.stats.assigned = tuple(p for p in self.stats.assigned if p not in revoked)

    def _rewind(self, first_offsets: Mapping[int, int]) -> None:
        """Forget the unwritten batch and seek kept partitions back to its first records."""
        for partition, offset in first_offsets.items():
            self._consumer.seek(TopicPartition(self.connector.topic, partition, offset))
        self._batch = self._new_batch()
        self._batch_dropped = True

    def _rewind_to_database(self) -> None:
        """Go back to what the database holds (after a fence, or a database that lost commits)."""
        stored = self._stored_offsets_retrying()
        assigned = {tp.partition for tp in self._consumer.assignment()}
        self._believed = {p: stored.get(p) for p in assigned}
        # A partition the database holds nothing of is re-read from where this
        # consumer started on it: its rows, if any were written, were lost with it.
        positions = {p: stored.get(p, self._first_read.get(p)) for p in assigned}
        self._rewind({p: o for p, o in positions.items() if o is not None})
