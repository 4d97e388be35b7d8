"""Dead-letter destinations: the `sinkframe_dead_letters` table and a Kafka topic.

A dead letter keeps the record's original key and value bytes, its Kafka
coordinates, and why it failed: the stage (decode, validate, map, write), the
error class, the message and, for database rejections, the SQLSTATE.

The table is written in the batch's own transaction, so a dead letter commits
exactly once with the rows and offsets of its batch. A Kafka topic cannot join
that transaction; dead letters are produced and flushed *before* the batch
commits, once its offsets' compare-and-set has succeeded (so a fenced batch
sends none). A crash between the two can therefore produce a dead letter twice
(the batch is re-read and fails the same way), but never lose one: the topic is
at-least-once, the table exactly-once.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Mapping, Sequence

from confluent_kafka import KafkaError, KafkaException, Producer
from psycopg import sql
from psycopg.types.json import Jsonb

from sinkframe.errors import RetriableWriteError
from sinkframe.pipeline.batch import Batch, DeadLetter, dead_letter_for

log = logging.getLogger(__name__)

DEAD_LETTER_COLUMNS = (
    "connector", "topic", "partition", "kafka_offset", "kafka_timestamp", "key", "value", "headers",
    "stage", "error_class", "error_message", "sqlstate",
)

# Header names on dead letters produced to a topic (after the record's own headers).
HEADER_PREFIX = "sinkframe."

# librdkafka consumer-only properties: left out of the dead-letter producer's
# configuration, which otherwise inherits the connector's Kafka settings
# (bootstrap servers, TLS, SASL) so that it reaches the same cluster.
_CONSUMER_ONLY = ("group.", "fetch.", "queued.", "auto.commit.", "enable.auto.", "session.timeout.ms",
                  "heartbeat.interval.ms", "max.poll.interval.ms", "auto.offset.reset",
                  "partition.assignment.strategy", "isolation.level", "enable.partition.eof",
                  "check.crcs", "consume.callback.max.messages", "allow.auto.create.topics")


def create_dead_letter_table(table: str) -> sql.Composed:
    return sql.SQL("""
CREATE TABLE IF NOT EXISTS {table} (
    id bigserial PRIMARY KEY,
    connector text NOT NULL,
    topic text NOT NULL,
    partition integer NOT NULL,
    kafka_offset bigint NOT NULL,
    kafka_timestamp timestamptz,
    key bytea,
    value bytea,
    headers jsonb,
    stage text NOT NULL,
    error_class text NOT NULL,
    error_message text NOT NULL,
    sqlstate text,
    failed_at timestamptz NOT NULL DEFAULT now()
)""").format(table=sql.Identifier(table))


def insert_dead_letters(cur, table: str, connector: str, dead_letters: Sequence[DeadLetter]) -> None:
    cur.executemany(
        sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
            sql.Identifier(table),
            sql.SQL(", ").join(map(sql.Identifier, DEAD_LETTER_COLUMNS)),
            sql.SQL(", ").join(sql.Placeholder() * len(DEAD_LETTER_COLUMNS))),
        [dead_letter_params(connector, d) for d in dead_letters])


def dead_letter_params(connector: str, d: DeadLetter) -> tuple:
    ts = datetime.fromtimestamp(d.timestamp_ms / 1000, timezone.utc) if d.timestamp_ms is not None else None
    headers = None
    if d.headers:
        headers = Jsonb([[_no_nul(k), _no_nul(v.decode("utf-8", "backslashreplace")) if isinstance(v, bytes) else v]
                         for k, v in d.headers])
    # text and jsonb cannot hold NUL; the raw key and value are kept intact as bytea.
    return (connector, d.topic, d.partition, d.offset, ts, d.key, d.value, headers,
            d.stage, d.error_class, _no_nul(d.error_message), d.sqlstate)


def _no_nul(text):
    return text.replace("\x00", "\\x00") if isinstance(text, str) else text


def record_dead_letter(batch: Batch, record: int, stage: str, error_class: str, reason: str,
                       sqlstate: str | None = None) -> DeadLetter:
    """A dead letter for record `record` of `batch`: from its message, or from the record's own fields
    for a batch built without its messages (tools, tests)."""
    if record < len(batch.sources):
        return dead_letter_for(batch.sources[record], stage, error_class, reason, sqlstate)
    records = batch.records
    return DeadLetter(batch.topic, records.partitions[record], records.offsets[record], records.timestamps_ms[record],
                      records.keys[record], records.values[record], None, stage, error_class, reason, sqlstate)


def dead_letter_headers(connector: str, d: DeadLetter) -> list[tuple[str, bytes]]:
    """The record's own headers, then where it came from and why it failed."""
    ours = {
        "connector": connector,
        "error.stage": d.stage,
        "error.class": d.error_class,
        "error.message": d.error_message,
        "error.sqlstate": d.sqlstate,
        "original.topic": d.topic,
        "original.partition": str(d.partition),
        "original.offset": str(d.offset),
        "original.timestamp": None if d.timestamp_ms is None else str(d.timestamp_ms),
    }
    return [*(d.headers or ()), *((HEADER_PREFIX + name, value.encode("utf-8", "backslashreplace"))
                                  for name, value in ours.items() if value is not None)]


def producer_properties(kafka: Mapping[str, str], connector: str, purpose: str = "dead-letters") -> dict[str, str]:
    props = {k: v for k, v in kafka.items() if not k.startswith(_CONSUMER_ONLY)}
    props.update({
        "client.id": f"sinkframe-{connector}-{purpose}",
        "acks": "all",
        "linger.ms": "5",
    })
    return props


class FlushedProducer:
    """Produces a batch's messages to one topic and waits until the broker has them all.

    What the dead-letter and the alerts topics share: they cannot join the
    database transaction, so they are sent and flushed after the offsets'
    compare-and-set and before the commit, and a failure makes the whole batch
    retry (at least once, never lost).
    """

    def __init__(self, kafka: Mapping[str, str], *, topic: str, connector: str, kind: str, noun: str,
                 timeout: float = 30.0, purpose: str = "dead-letters"):
        self.topic = topic
        self.connector = connector
        self.kind, self.noun = kind, noun  # for error messages: "dead-letter topic ...: 2 dead letters ..."
        self.timeout = timeout
        props = producer_properties(kafka, connector, purpose)
        # Undelivered messages expire with the flush: a retry produces them again.
        props["message.timeout.ms"] = str(int(timeout * 1000))
        self._producer = Producer(props, logger=logging.getLogger("sinkframe.kafka"))

    def send_all(self, messages: Sequence[tuple[bytes | None, bytes | None, list | None]]) -> None:
        """Produce (key, value, headers) messages and flush; RetriableWriteError if any is not acknowledged."""
        if not messages:
            return
        failures: list[KafkaError] = []

        def delivered(err, _msg):
            if err is not None:
                failures.append(err)

        for key, value, headers in messages:
            self._produce(key, value, headers, delivered)
        remaining = self._producer.flush(self.timeout)
        if remaining or failures:
            reason = failures[0].str() if failures else f"not acknowledged within {self.timeout:.0f}s"
            raise RetriableWriteError(
                f"connector {self.connector}: {self.kind} topic {self.topic}: "
                f"{remaining + len(failures)} of {len(messages)} {self.noun} not delivered ({reason}); "
                "the batch is not committed and will be retried")

    def _produce(self, key, value, headers, delivered) -> None:
        while True:
            try:
                self._producer.produce(self.topic, key=key, value=value, headers=headers, on_delivery=delivered)
                return
            except BufferError:  # local queue full: let it drain
                self._producer.poll(0.1)
            except KafkaException as err:
                raise RetriableWriteError(f"connector {self.connector}: {self.kind} topic {self.topic}: "
                                          f"{err}; the batch will be retried") from err

    def close(self) -> None:
        self._producer.flush(min(self.timeout, 5.0))


class DeadLetterProducer(FlushedProducer):
    """Dead letters to a topic: the original key and value, the reason in headers."""

    def __init__(self, kafka: Mapping[str, str], *, topic: str, connector: str, timeout: float = 30.0):
        super().__init__(kafka, topic=topic, connector=connector, kind="dead-letter", noun="dead letters",
                         timeout=timeout)

    def send(self, dead_letters: Sequence[DeadLetter]) -> None:
        self.send_all([(d.key, d.value, dead_letter_headers(self.connector, d)) for d in dead_letters])
