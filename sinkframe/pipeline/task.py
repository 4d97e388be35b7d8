"""ConnectorTask: one consumer thread per connector.

Its loop is the whole pipeline for one topic:
poll -> decode -> map -> add to batch -> (batch full or old enough) -> write rows
and offsets in one transaction -> commit offsets to Kafka for lag tools.

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
from sinkframe.pipeline.batch import Batch, DeadLetter
from sinkframe.pipeline.decode import decode_json_object
from sinkframe.pipeline.offsets import load_offsets
from sinkframe.pipeline.stats import ConnectorStats
from sinkframe.pipeline.writer import BatchWriter

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 30.0


def consumer_properties(base: Mapping[str, str], connector: ConnectorConfig) -> dict[str, str]:
    """librdkafka settings: process-wide ones, then the connector's own, then what we require."""
    props = {
        "auto.offset.reset": "earliest",  # a new group starts at the beginning, as Connect sinks do
        "client.id": f"sinkframe-{connector.name}",
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
        self._batch = self._new_batch()
        self._batch_dropped = False
        self._max_wait = connector.max_wait_ms / 1000
        self._load_db_offsets = db_offsets or self._query_db_offsets

    # -- lifecycle ------------------------------------------------------------------
    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()

    def run(self) -> None:
        try:
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
        ts_type, ts = message.timestamp()
        timestamp_ms = ts if ts_type != 0 else None  # 0 = TIMESTAMP_NOT_AVAILABLE
        batch = self._batch
        try:
            value = decode_json_object(message.value())
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
        except RecordError as err:
            self._poison(message, err)
        batch.note_message(partition, offset, timestamp_ms)

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
        ts_type, ts = message.timestamp()
        self._batch.dead_letters.append(DeadLetter(
            message.topic(), message.partition(), message.offset(), ts if ts_type != 0 else None,
            message.key(), message.value(), tuple(message.headers() or ()) or None,
            err.stage, type(cause).__name__, err.reason, err.sqlstate))

    # -- writing --------------------------------------------------------------------
    def _flush(self) -> None:
        batch = self._batch
        if not batch:
            return
        self._batch_dropped = False
        started = time.monotonic()
        attempt = 0
        while True:
            try:
                self.writer.write(batch, {p: self._believed.get(p) for p in batch.next_offsets})
                break
            except RetriableWriteError as err:
                attempt += 1
                self.stats.write_retries += 1
                if not self._wait_for_database(err, attempt):
                    return  # stopping, or a rebalance took the batch's partitions
            except PartitionFenced as err:
                self.stats.fenced += 1
                log.warning("connector %s: %s", self.connector.name, err)
                self._rewind_to_database()
                return
        self._resume_if_paused()
        elapsed = time.monotonic() - started
        self._believed.update(batch.next_offsets)
        self._commit_to_kafka(batch.next_offsets)
        self.stats.record_batch(
            messages=batch.messages, rows={self.writer.targets[r].table: len(v) for r, v in batch.rows.items() if v},
            dead_letters=len(batch.dead_letters), seconds=elapsed, newest_ms=batch.newest_timestamp_ms,
            next_offsets=batch.next_offsets)
        log.debug("connector %s: wrote %d messages (%d rows) in %.3fs", self.connector.name,
                  batch.messages, batch.row_count, elapsed)
        self._batch = self._new_batch()

    def _wait_for_database(self, err: RetriableWriteError, attempt: int) -> bool:
        """Back off while the database is unavailable; keep the consumer alive but paused.

        Pausing keeps memory bounded (nothing more is fetched) while polling keeps
        this member in the group. Returns False when the batch must be abandoned.
        """
        delay = min(0.5 * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS)
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
            self._consumer.consume(num_messages=1, timeout=0.1)  # serves rebalance callbacks only
            if self._batch_dropped:
                return False
        return True

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
    def _query_db_offsets(self) -> dict[int, int]:
        with self.writer.pool.connection() as conn:
            return load_offsets(conn, self.connector.group_id, self.connector.topic)

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
                delay = min(0.5 * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS)
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
        consumer.assign(partitions)
        self.stats.assigned = tuple(sorted(tp.partition for tp in consumer.assignment()))
        self.stats.committed_offsets.update({p: o for p, o in stored.items()
                                             if p in {tp.partition for tp in partitions}})
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
        self.stats.assigned = tuple(p for p in self.stats.assigned if p not in revoked)

    def _rewind(self, first_offsets: Mapping[int, int]) -> None:
        """Forget the unwritten batch and seek kept partitions back to its first records."""
        for partition, offset in first_offsets.items():
            self._consumer.seek(TopicPartition(self.connector.topic, partition, offset))
        self._batch = self._new_batch()
        self._batch_dropped = True

    def _rewind_to_database(self) -> None:
        stored = self._stored_offsets_retrying()
        assigned = {tp.partition for tp in self._consumer.assignment()}
        self._believed = {p: stored.get(p) for p in assigned}
        self._rewind({p: o for p, o in stored.items() if p in assigned})
