"""Send a fleet's messages to Kafka at a steady rate (token bucket).

Every record carries its produce time twice: as the Kafka record timestamp and
in a `produced_at_ms` header, so end-to-end latency can be measured downstream
(on-time messages also carry it as their event `timestamp`, which lands in the
tables' `time` column next to the database's `ingested_at`).
"""
from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from sinkframe.errors import SinkframeError
from sinkframe.simulator.fleet import DEFAULT_TOPICS, Fleet, Message

log = logging.getLogger(__name__)

PRODUCED_AT_HEADER = "produced_at_ms"

# librdkafka properties that only a consumer understands: the process-wide Kafka
# settings (SINKFRAME_KAFKA_*) may hold them, and a producer would warn about each.
CONSUMER_ONLY_PREFIXES = ("session.timeout.ms", "heartbeat.interval.ms", "group.", "auto.offset.reset",
                          "enable.auto.", "auto.commit.", "max.poll.interval.ms", "fetch.",
                          "partition.assignment.strategy", "isolation.level", "queued.",
                          "enable.partition.eof", "check.crcs")


@dataclass
class ProduceReport:
    sent: int = 0
    delivered: int = 0
    failed: int = 0
    by_topic: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    first_error: str | None = None

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0

    def flushed(self, producer: Producer, timeout: float) -> "ProduceReport":
        """Wait up to `timeout` for the deliveries; what is still unacknowledged counts as failed."""
        remaining = producer.flush(timeout)
        if remaining:
            self.failed += remaining
            self.first_error = self.first_error or f"{remaining} message(s) not delivered within {timeout:g} s"
        return self

    def on_delivery(self, err, _msg) -> None:
        """The producer's delivery callback: count what the broker took and keep the first refusal."""
        if err is None:
            self.delivered += 1
        else:
            self.failed += 1
            self.first_error = self.first_error or str(err)


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up; `None` rate: no limit."""

    def __init__(self, rate: float | None, burst: float | None = None):
        self.rate = rate
        self.capacity = burst or (max(1.0, rate * 0.05) if rate else 0.0)
        self.tokens = 1.0 if rate else 0.0  # start steady, not with a burst
        self.last = time.monotonic()

    def wait_time(self) -> float:
        """Take a token and return 0, or return how long to wait before asking again."""
        if not self.rate:
            return 0.0
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


def producer_config(kafka: Mapping[str, str]) -> dict[str, str]:
    """Process-wide Kafka settings minus the consumer-only ones."""
    return {k: v for k, v in kafka.items() if not k.startswith(CONSUMER_ONLY_PREFIXES)}


def ensure_topics(bootstrap: str, topics: list[str], *, partitions: int = 3, replication: int = 1,
                  config: Mapping[str, str] | None = None, timeout: float = 15.0) -> list[str]:
    """Create the topics that do not exist yet; return the ones created."""
    admin = AdminClient({**(config or {}), "bootstrap.servers": bootstrap})
    try:
        existing = set(admin.list_topics(timeout=timeout).topics)
    except KafkaException as err:
        raise SinkframeError(f"cannot reach the Kafka brokers at {bootstrap}: {err}") from err
    missing = sorted(set(topics) - existing)
    if not missing:
        return []
    futures = admin.create_topics([NewTopic(t, partitions, replication) for t in missing],
                                  operation_timeout=timeout)
    for topic, future in futures.items():
        try:
            future.result(timeout)
        except KafkaException as err:
            if err.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise SinkframeError(f"creating topic {topic}: {err}") from err
    return missing


def produce(bootstrap: str, fleet: Fleet, *, rate: float | None = 1000.0, duration: float | None = None,
            count: int | None = None, topics: Mapping[str, str] | None = None,
            config: Mapping[str, str] | None = None, backfill: tuple[float, float, float] | None = None,
            stop: threading.Event | None = None,
            on_progress: Callable[[ProduceReport], None] | None = None) -> ProduceReport:
    """Send the fleet's messages until `duration` seconds passed or `count` were sent.

    rate: messages per second over all topics (None or 0: as fast as possible).
    topics: topic per message kind (defaults: DEFAULT_TOPICS).
    backfill: (start, end, interval) epoch seconds: readings at those event times
      instead of the wall clock, ending when `end` is reached (load history fast).
    stop: set it from another thread to end early. Waits for every delivery.
    """
    if duration is None and count is None and backfill is None and stop is None:
        raise ValueError("give a duration, a count, a backfill range or a stop event")
    names = {**DEFAULT_TOPICS, **(topics or {})}
    report = ProduceReport()
    producer = Producer({"linger.ms": 5, "queue.buffering.max.messages": 200_000,
                         **(config or {}), "bootstrap.servers": bootstrap})

    messages = fleet.history(*backfill) if backfill else fleet.stream()
    started = time.monotonic()
    deadline = started + duration if duration is not None else None
    next_progress = started + 1.0
    bucket = TokenBucket(rate)
    for message in _bounded(messages, count):
        if stop is not None and stop.is_set():
            break
        while (wait := bucket.wait_time()) > 0:
            producer.poll(wait)  # serve delivery reports while waiting for a token
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            break
        _send(producer, names[message.kind], message, report.on_delivery)
        report.sent += 1
        report.by_topic[names[message.kind]] += 1
        if now >= next_progress:
            producer.poll(0)
            report.seconds = now - started
            if on_progress:
                on_progress(report)
            next_progress = now + 1.0
    report.seconds = time.monotonic() - started
    return report.flushed(producer, 30)


def _bounded(messages: Iterator[Message], count: int | None) -> Iterator[Message]:
    if count is None:
        yield from messages
        return
    for index, message in enumerate(messages):
        if index >= count:
            return
        yield message


def _send(producer: Producer, topic: str, message: Message, on_delivery) -> None:
    now_ms = int(time.time() * 1000)
    while True:
        try:
            producer.produce(topic, message.value, message.key, timestamp=now_ms, on_delivery=on_delivery,
                             headers=[(PRODUCED_AT_HEADER, str(now_ms).encode())])
            return
        except BufferError:  # the local queue is full: let librdkafka send some first
            producer.poll(0.05)
