"""ConnectorTask: one consumer thread per connector, and the framework side of the sink.

As Kafka Connect splits WorkerSinkTask (the consumer loop, offsets,
rebalances) from the plugin's SinkTask (put / flush), the parts are:

- this module: the consumer loop. It polls, hands each consume() call's
  messages to the `BatchBuilder` (batch.py: the consumer side's stages, consume ->
  decode and map -> route, then added to the batch), hands a full or old enough
  batch to the `WriteStage`, applies each completion (positions, Kafka commit,
  stats, rewinds) and serves rebalance callbacks;
- `PartitionPositions` (consume/positions.py): what the database holds per
  partition, and whether its records may be read yet (`PartitionState`);
- `LogEndCheck` (consume/logend.py): where an assigned partition starts, and a
  stored offset past the log end said out loud;
- `WriteStage` (write/writestage.py): the writer thread, one job in flight (a
  batch to write, or the stored offsets to read), each attempt bounded.

The consumer thread builds batch N+1 while the writer thread writes batch N.
Exactly once rests on five rules kept here:
1. a batch is handed over only after the previous job's completion is applied,
   so each write expects the offsets the previous one stored (compare-and-set);
2. a batch that was not written (fenced, given up) takes the batch being built
   with it, and the partitions are re-read from what the database holds;
3. the consumer thread never waits on the database, and a rebalance callback
   least of all. A revocation gives the write in flight a short grace, then gives
   it up: the partitions go at once. A write given up may still commit (its
   COMMIT may have reached the server); that is safe, because
   - its outcome is never applied: positions come from the database only;
   - the partitions we keep are re-read from the database, by a load that runs on
     the writer thread after that write has ended, so it sees what it left;
   - the next owner of a revoked partition, if it loaded the offsets before that
     commit, is fenced by the compare-and-set and re-reads them itself;
4. an assigned (or rewound) partition is read only once the database has said
   where it stands (LOADING, paused, outside the callback) and the broker that
   its log still reaches there (CHECKING): records of other partitions go on
   meanwhile, and a stored offset past the log end stops the partition (or,
   opted in, restarts it from the log's start with the jump recorded);
5. while the database is down (or the writer keeps a full batch waiting), the
   consumer pauses its partitions and keeps calling `consume()`, which serves rebalance callbacks
   and keeps it in the group however long the outage lasts; memory stays bounded
   by two batches plus librdkafka's queue.
On stop, the write in flight is given up (its connection shut, so its transaction
does not commit) once it is retrying or half the shutdown timeout has passed:
what it held is read again on the next start, from the offsets the database holds.

A record that fails a stage is poison: with `errors.tolerance: all` it becomes a
dead letter (table and/or topic) and the stream goes on; with `none` the
connector writes what came before it and stops, naming the record.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Iterable, Mapping

from confluent_kafka import OFFSET_END, Consumer, KafkaError, KafkaException, TopicPartition

from sinkframe.config.connector import ConnectorConfig
from sinkframe.errors import ConnectorFailed
from sinkframe.mapping.base import Mapper
from sinkframe.mapping.validation import MessageValidator
from sinkframe.pipeline.batch import Batch, BatchBuilder
from sinkframe.pipeline.consume.logend import LogEndCheck, describe_offset
from sinkframe.pipeline.consume.positions import PartitionPositions, PartitionState
from sinkframe.pipeline.route import TenantRouter
from sinkframe.pipeline.stats import ConnectorState, ConnectorStats
from sinkframe.pipeline.write.deadletter import DeadLetterProducer
from sinkframe.pipeline.write.writer import BatchWriter, committed_records
from sinkframe.pipeline.write.writestage import Completion, WriteStage

log = logging.getLogger(__name__)

# How long a full batch waits for a busy writer before the consumer pauses
# fetching and polls for rebalance callbacks meanwhile. A normal write takes
# well under this; pausing on every batch would throw away librdkafka's prefetch.
PAUSE_AFTER_SECONDS = 1.0
POLL_TIMEOUT_SECONDS = 0.02
# How long a revocation lets the write in flight end by itself before giving it
# up: a healthy write ends well within it, and the group waits for the callback.
REVOKE_GRACE_SECONDS = 0.5

# librdkafka defaults for a sink (each can be overridden; docs/reliability.md):
# - the prefetch queue bounded below librdkafka's (64 MB, 100k messages per
#   partition): with two batches of max_rows messages held in Python, this is the
#   rest of what a backlog can occupy;
# - fetch.queue.backoff.ms: once a fetch overshoots that bound librdkafka waits
#   this long before fetching again; its default (1000 ms) left the sink idle for
#   most of the time in the benchmark (docs/benchmark.md);
# - fetch.wait.max.ms: how long the broker may hold a fetch waiting for data.
#   A message can wait that long under light load; a short wait keeps the
#   end-to-end latency low, at the price of more empty fetches when idle.
CONSUMER_DEFAULTS = {
    "queued.max.messages.kbytes": "16384",
    "queued.min.messages": "20000",
    "fetch.max.bytes": "16777216",
    "fetch.queue.backoff.ms": "20",
    "fetch.wait.max.ms": "10",
}


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
                 router: TenantRouter | None = None, shutdown_timeout: float = 30.0):
        self.connector = connector
        self.mapper = mapper
        self.writer = writer
        self.kafka = consumer_properties(kafka, connector)
        self.stop_event = stop or threading.Event()
        self.stats = ConnectorStats(connector.name, connector.topic)
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self.run, name=f"connector-{connector.name}", daemon=True)
        self.positions = PartitionPositions(connector.name, connector.topic)
        validator = MessageValidator(connector.message_schema) if connector.message_schema else None
        self.builder = BatchBuilder(connector.topic, mapper, positions=self.positions,
                                    validate=validator.validate if validator else None,
                                    tolerate=connector.tolerance == "all", router=router,
                                    fallbacks=self.stats.fast_path_fallbacks)
        self.router = router
        self.shutdown_timeout = shutdown_timeout
        self._consumer: Consumer | None = None
        self._stage: WriteStage | None = None
        self._log_end: LogEndCheck | None = None
        self._max_wait = connector.max_wait_ms / 1000
        self._dead_letter_topic: DeadLetterProducer | None = None
        self._revoking: set[int] = set()
        self._give_up_at: float | None = None  # once stopping: when the write in flight is given up

    # -- lifecycle ------------------------------------------------------------------
    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()

    def has_unwritten(self) -> bool:
        """Whether messages were consumed that are not written yet, or partitions wait for their offsets."""
        return (bool(self.builder.batch) or (self._stage is not None and self._stage.busy())
                or bool(self.positions.in_state(PartitionState.LOADING)))

    def load_alert_states(self) -> None:
        """Start the firing-alert counts from what the database holds (metrics, status)."""
        recorders = [part for part in self.writer.parts if hasattr(part, "firing_now")]
        if recorders:
            with self.writer.pool.connection() as conn:
                for recorder in recorders:
                    # Every rule from the start, at 0 when nothing fires: a series per alert from the first scrape.
                    self.stats.alerts_firing.update({rule.name: 0 for rule in recorder.rules})
                    self.stats.alerts_firing.update(recorder.firing_now(conn))

    @property
    def skipped_stored(self) -> int:
        return self.positions.skipped_stored

    def run(self) -> None:
        try:
            if self.connector.tolerance == "all" and self.connector.dead_letter_topic:
                self._dead_letter_topic = DeadLetterProducer(
                    self.kafka, topic=self.connector.dead_letter_topic, connector=self.connector.name)
            self._stage = WriteStage(self.writer, self.stats, tolerate=self.connector.tolerance == "all",
                                     before_commit=self._dead_letter_topic.send if self._dead_letter_topic else None)
            self._stage.open()
            self._consumer = Consumer(self.kafka, logger=logging.getLogger("sinkframe.kafka"))
            self._log_end = LogEndCheck(self._consumer, self.connector, self.positions, self.stats)
            self._consumer.subscribe([self.connector.topic], on_assign=self._on_assign,
                                     on_revoke=self._on_revoke, on_lost=self._on_revoke)
            self.stats.state = ConnectorState.RUNNING
            while not self.stop_event.is_set():
                if self._stage.retrying:  # the database is down: fetch nothing more until it is back
                    self._wait_for_writer()
                self._poll()
                self._collect(timeout=0)
                self._settle_partitions()
                if self._due():
                    self._hand_over()
            self.stats.state = ConnectorState.STOPPING
            self._write_everything()
            self.stats.state = ConnectorState.STOPPED
        except BaseException as err:  # the runner reports it and stops the process
            self.failure = err
            self.stats.state = ConnectorState.FAILED
            log.error("connector %s stopped: %s", self.connector.name, err)
        finally:
            self._close()

    def _close(self) -> None:
        if self._stage is not None:
            self._stage.abandon(interrupt=True)  # nothing is in flight after a clean stop
            if not self._stage.close(timeout=max(self.shutdown_timeout / 4, 1.0)):
                log.warning("connector %s: the writer thread did not end; leaving it", self.connector.name)
        if self._consumer is not None:
            try:
                self._consumer.close()
            except (KafkaException, RuntimeError) as err:
                log.warning("connector %s: closing the consumer: %s", self.connector.name, err)
        if self._dead_letter_topic is not None:
            self._dead_letter_topic.close()
        for part in self.writer.parts:
            part.close()

    # -- consuming ------------------------------------------------------------------
    def _poll(self) -> None:
        batch = self.builder.batch
        remaining = self._max_wait - batch.age() if batch else self._max_wait
        # consume() returns early only once it has `wanted` messages, so under light
        # load each call waits its whole timeout: a short one starts a batch's clock
        # (max_wait_ms) soon after its first message arrived, not a long wait later.
        timeout = min(max(remaining, 0.005), POLL_TIMEOUT_SECONDS)
        wanted = min(self.connector.max_rows - batch.message_count, 10_000)
        if wanted <= 0:  # full, and the writer is busy: wait for it in _hand_over
            return
        messages = []
        for message in self._consumer.consume(num_messages=wanted, timeout=timeout):
            error = message.error()
            if error is None:
                messages.append(message)
            else:
                self._on_kafka_error(error)
        if messages:
            self._add(self._admitted(messages))

    def _admitted(self, messages: list) -> list:
        """The messages of READY partitions; others wait for the database or the broker (rule 4)."""
        keep = set(self.positions.in_state(PartitionState.READY))
        if len(keep) == len(self.positions.state):
            return messages
        first: dict[int, int] = {}
        for message in messages:
            first.setdefault(message.partition(), message.offset())
        for partition in self.positions.in_state(PartitionState.CHECKING):
            if self._log_end.check(partition, first_offset=first.get(partition)):
                keep.add(partition)
        # What is held back is read again: a LOADING partition is sought to its
        # stored offset once loaded, a CHECKING one once confirmed.
        return [m for m in messages if m.partition() in keep]

    def _on_kafka_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._PARTITION_EOF:
            return
        if error.fatal():
            raise ConnectorFailed(f"connector {self.connector.name}: fatal Kafka error: {error.str()}")
        log.warning("connector %s: Kafka: %s", self.connector.name, error.str())

    def _add(self, messages: list) -> None:
        if not messages:
            return
        before = len(self.builder.batch.dead_letters)
        stop = self.builder.add(messages)
        for letter in self.builder.batch.dead_letters[before:]:
            self._count_poison(letter.stage, letter.error_class)
            log.warning("connector %s: %s: %s failed, dead-lettered: %s", self.connector.name,
                        letter.coordinates, letter.stage, letter.error_message)
        if stop is not None:
            message, rejection = stop.message, stop.rejection
            self._count_poison(rejection.stage, rejection.error_class)
            # Commit the good records before this one, then stop: nothing past the
            # last good record is committed, and the bad one is re-read after a fix.
            self._write_everything()
            raise ConnectorFailed(f"connector {self.connector.name}: {message.topic()}[{message.partition()}]@"
                                  f"{message.offset()}: {rejection.stage} failed: {rejection.reason} "
                                  "(errors.tolerance is none)")

    def _count_poison(self, stage: str, error_class: str) -> None:
        self.stats.errors_by_stage[(stage, error_class)] += 1

    def _unread(self, messages: Iterable) -> None:
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

    # -- handing batches to the writer ------------------------------------------------
    def _due(self) -> bool:
        batch = self.builder.batch
        if not batch:
            return False
        if batch.message_count >= self.connector.max_rows:
            return True
        # An old enough batch goes as soon as the writer is free; while it is busy
        # the batch keeps filling, so batches grow with the load.
        return batch.age() >= self._max_wait and not self._stage.busy()

    def _hand_over(self) -> None:
        """Give the batch being built to the writer, once the previous job's completion is applied."""
        self._wait_for_writer()
        if self.positions.in_state(PartitionState.LOADING) and not self.stop_event.is_set():
            # Partitions waiting for their offsets go first: under load the writer is
            # never idle between batches, and they would wait for ever.
            self._stage.load_offsets()
            self._wait_for_writer()
        batch = self.builder.take()
        if not batch:  # dropped while waiting (a revocation, a fence)
            return
        self.positions.note_read(batch.first_offsets)
        self._stage.put(batch, self.positions.expected(batch.next_offsets))

    def _wait_for_writer(self) -> None:
        """Apply the completion of the job in flight, polling (paused) while it takes long."""
        waited_from = time.monotonic()
        while self._stage.busy():
            self._give_up_if_stopping()
            if self._collect(timeout=0 if self.stats.paused else 0.05):
                break
            if not self.stats.paused and (self._stage.retrying
                                          or time.monotonic() - waited_from > PAUSE_AFTER_SECONDS):
                self._pause()
            if self._stage.retrying and self.stats.paused:
                # Set here, after pausing: whoever sees this state sees the consumer paused.
                self.stats.state = ConnectorState.WAITING_FOR_DATABASE
            if self.stats.paused:
                # Serves rebalance callbacks and counts as a poll for max.poll.interval.ms.
                self._unread(self._consumer.consume(num_messages=100, timeout=0.1))
        self._resume_if_paused()

    def _give_up_if_stopping(self) -> None:
        """Stopping: give the job in flight up once it waits for the database or half the shutdown time passed."""
        if not self.stop_event.is_set():
            return
        if self._give_up_at is None:
            self._give_up_at = time.monotonic() + self.shutdown_timeout / 2
        if not (self._stage.retrying or time.monotonic() >= self._give_up_at):
            return
        unwritten = self._unwritten_messages()
        if self._stage.abandon(interrupt=True):
            log.warning("connector %s: stopping while the database is unavailable or slow; %d messages not "
                        "written will be read again on the next start", self.connector.name, unwritten)

    def _unwritten_messages(self) -> int:
        return self.builder.batch.message_count + self._stage.in_flight_messages()

    def _write_everything(self) -> None:
        """Hand over what is built and wait until it is written (or given up)."""
        if self.builder.batch:
            self._hand_over()
        self._wait_for_writer()

    def _collect(self, timeout: float | None) -> bool:
        """Apply the completion of the job in flight if it has one; True if one was applied."""
        completion = self._stage.wait(timeout)
        if completion is None:
            return False
        self._apply(completion)
        return True

    def _apply(self, completion: Completion) -> None:
        batch = completion.batch
        if completion.late:
            self._given_up_ended(completion)
        elif completion.is_load and completion.stored is not None:
            self._start_loaded(completion.stored)
            self.stats.state = ConnectorState.RUNNING  # the database answered
        elif completion.outcome is not None:
            outcome = completion.outcome
            self.positions.committed(outcome.next_offsets)
            self._commit_to_kafka(outcome.next_offsets)
            self._record(batch, completion)
            self.stats.state = ConnectorState.RUNNING
            if outcome.stopped_at:
                raise ConnectorFailed("; ".join(
                    f"connector {self.connector.name}: {d.coordinates}: {d.stage} failed: {d.error_message}"
                    f"{f' (SQLSTATE {d.sqlstate})' if d.sqlstate else ''}" for d in outcome.stopped_at)
                    + " (errors.tolerance is none; nothing from that record on was committed)")
        elif completion.fenced is not None:
            self.stats.fenced += 1
            log.warning("connector %s: %s", self.connector.name, completion.fenced)
            self._rewind_to_database()
        else:
            raise completion.error

    def _given_up_ended(self, completion: Completion) -> None:
        """A job given up (revocation, stop) has ended: count what it committed, apply nothing (rule 3).

        The batch built after it goes too (rule 2: it expects the offsets the given-up
        write was to store), and the partitions are read again from the database.
        """
        self._await_database(self._assigned())
        if completion.outcome is not None:
            log.info("connector %s: a write given up committed after all (%d messages); the offsets are "
                     "read again from the database", self.connector.name, completion.batch.message_count)
            self._record(completion.batch, completion)
        elif completion.fenced is not None:
            self.stats.fenced += 1
            log.warning("connector %s: a write given up was fenced: %s", self.connector.name, completion.fenced)
        elif completion.error is not None:
            log.warning("connector %s: a write given up failed: %s", self.connector.name, completion.error)

    def _record(self, batch: Batch, completion: Completion) -> None:
        outcome = completion.outcome
        for letter in outcome.rejected + outcome.stopped_at:
            self._count_poison(letter.stage, letter.error_class)  # write, or route (a tenant removed)
        written = committed_records(batch, outcome)
        rows = {}
        for role, columns in batch.roles.items():
            if outcome.rejected or outcome.stopped_at:
                kept = sum(1 for i in columns.record_index if written(i))
            else:
                kept = len(columns)
            if kept:
                rows[self.writer.resolved(role).qualified_name] = kept
        dead = len(batch.dead_letters) + len(outcome.rejected)
        self.stats.record_transitions(outcome.transitions)
        self.stats.record_batch(messages=batch.message_count, rows=rows, dead_letters=dead, seconds=completion.seconds,
                                newest_ms=batch.newest_timestamp_ms, next_offsets=outcome.next_offsets)
        log.debug("connector %s: wrote %d messages (%d rows, %d dead letters) in %.3fs", self.connector.name,
                  batch.message_count, sum(rows.values()), dead, completion.seconds)

    def _pause(self) -> None:
        self._consumer.pause(self._consumer.assignment())
        self.stats.paused = True

    def _resume_if_paused(self) -> None:
        if self.stats.paused:
            self._consumer.resume(self._fetching())
            self.stats.paused = False

    def _fetching(self) -> list[TopicPartition]:
        """The assigned partitions that are to be fetched: READY, and CHECKING (the fetch tells the log end)."""
        return [TopicPartition(self.connector.topic, p)
                for p in self.positions.in_state(PartitionState.READY, PartitionState.CHECKING)]

    def _commit_to_kafka(self, next_offsets: Mapping[int, int]) -> None:
        offsets = [TopicPartition(self.connector.topic, p, o) for p, o in next_offsets.items()]
        try:
            self._consumer.commit(offsets=offsets, asynchronous=True)
        except KafkaException as err:  # the database holds the truth; this is only for lag tools
            log.info("connector %s: Kafka offset commit failed (harmless): %s", self.connector.name, err)

    # -- positions and rebalances -------------------------------------------------------
    def _assigned(self) -> set[int]:
        """The partitions this consumer keeps: its assignment, less those being revoked."""
        return {tp.partition for tp in self._consumer.assignment()} - self._revoking

    def _settle_partitions(self) -> None:
        """Load the offsets of LOADING partitions when the writer is free; check CHECKING ones' log end."""
        if self.positions.in_state(PartitionState.LOADING) and not self._stage.busy():
            self._stage.load_offsets()
        for partition in self.positions.in_state(PartitionState.CHECKING):
            self._log_end.check(partition)  # a partition with no record to read settles here

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            # A placeholder that costs no committed-offset lookup: the partition is paused
            # here and sought to the offset the database holds once it has answered.
            tp.offset = OFFSET_END
        consumer.assign(partitions)
        consumer.pause(partitions)
        self.positions.assign(tp.partition for tp in partitions)
        self.stats.assignments += 1
        self.stats.assigned = tuple(sorted(tp.partition for tp in consumer.assignment()))
        log.info("connector %s: assigned %s; reading their stored offsets", self.connector.name,
                 ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions) or "nothing")

    def _start_loaded(self, stored: Mapping[int, int]) -> None:
        """The database answered: seek each LOADING partition there and let it be fetched."""
        start = self.positions.loaded(stored)
        start = {p: o for p, o in start.items() if p in self._assigned()}
        if not start:
            return
        fallback = self._log_end.committed_or_reset([p for p, o in start.items() if o is None])
        tps = [TopicPartition(self.connector.topic, p, o if o is not None else fallback[p]) for p, o in start.items()]
        # Resume first: a seek must reach partitions that are fetching, so that
        # resuming later cannot take them back to where the application last read.
        self._consumer.resume(tps)
        for tp in tps:
            self._log_end.sought(tp.partition)
            self._consumer.seek(tp)
        self.stats.stored_offsets.update({p: stored[p] for p in start if p in stored})
        log.info("connector %s: reading %s", self.connector.name, ", ".join(
            f"{self.connector.topic}[{p}]@{'stored ' + str(o) if o is not None else describe_offset(fallback[p])}"
            for p, o in start.items()))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        revoked = {tp.partition for tp in partitions}
        self._revoking = revoked
        try:
            stage = self._stage
            # A healthy write ends within the grace; one waiting for the database is given up (rule 3).
            if stage is not None and stage.busy() and not self._collect(timeout=REVOKE_GRACE_SECONDS) \
                    and stage.writing():
                self._give_up_write()
            batch = self.builder.batch
            if batch and revoked & set(batch.next_offsets):
                # The new owner re-reads these records from the stored offsets; records of
                # partitions we keep (cooperative rebalancing) are re-read by us.
                log.info("connector %s: partitions %s revoked; dropping %d unwritten messages",
                         self.connector.name, sorted(revoked), batch.message_count)
                self._drop([batch], keep=self._assigned())
        finally:
            self._revoking = set()
        self.positions.revoke(revoked)
        self.stats.assigned = tuple(p for p in self.stats.assigned if p not in revoked)

    def _give_up_write(self) -> None:
        log.warning("connector %s: a revocation came while a write of %d messages was in flight; giving it up "
                    "(its records are read again from the offsets the database holds)", self.connector.name,
                    self._stage.in_flight_messages())
        self._stage.abandon()
        self._await_database(self._assigned())

    def _drop(self, batches: list[Batch], *, keep: set[int]) -> None:
        """Forget unwritten batches; seek the kept partitions back to their first records."""
        first: dict[int, int] = {}
        for batch in batches:
            for partition, offset in batch.first_offsets.items():
                first[partition] = min(offset, first.get(partition, offset))
        # Resume first: a seek must reach partitions that are fetching, so that
        # resuming later cannot take them back to where the application last read.
        self._resume_if_paused()
        for partition, offset in first.items():
            if partition in keep:
                self._consumer.seek(TopicPartition(self.connector.topic, partition, offset))
        self.builder.take()

    def _rewind_to_database(self) -> None:
        """Go back to what the database holds (after a fence, or a database that lost commits)."""
        # A partition the database holds nothing of is read again from the first
        # record this consumer read of it, the batch being built included.
        self.positions.note_read(self.builder.batch.first_offsets)
        self._await_database(self._assigned())

    def _await_database(self, partitions: set[int]) -> None:
        """Drop the batch being built; pause `partitions` until their stored offsets are read again."""
        self.builder.take()
        if partitions:
            self._consumer.pause([TopicPartition(self.connector.topic, p) for p in partitions])
            self.positions.reload(partitions)
