"""Partition positions from the brokers, read with a client of our own.

The connector tasks' consumers are not thread-safe and belong to their threads,
so monitoring never touches them: it opens its own consumer, which never
subscribes (it joins no group) and only asks for watermarks and committed
offsets.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Iterable, Mapping

from confluent_kafka import Consumer, KafkaException, TopicPartition

log = logging.getLogger(__name__)

MONITOR_GROUP = "sinkframe-monitor"  # only to satisfy librdkafka: this client never joins it


@dataclass(frozen=True)
class Watermarks:
    low: int
    high: int


def monitor_consumer(kafka: Mapping[str, str], *, group_id: str = MONITOR_GROUP) -> Consumer:
    """A consumer for metadata queries; `group_id` matters only for `committed()`."""
    props = {k: v for k, v in kafka.items() if k not in ("group.id", "group.instance.id")}
    return Consumer({**props, "group.id": group_id, "enable.auto.commit": "false",
                     "client.id": "sinkframe-monitor"}, logger=logging.getLogger("sinkframe.kafka"))


def topic_partitions(consumer: Consumer, topic: str, *, timeout: float = 5.0) -> list[int]:
    metadata = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
    if metadata is None or metadata.error is not None:
        reason = metadata.error.str() if metadata is not None else "not found"
        raise KafkaException(f"topic {topic}: {reason}")
    return sorted(metadata.partitions)


def watermarks(consumer: Consumer, topic: str, partitions: Iterable[int], *,
               timeout: float = 5.0) -> dict[int, Watermarks]:
    result = {}
    for partition in partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
        result[partition] = Watermarks(low, high)
    return result


def committed(consumer: Consumer, topic: str, partitions: Iterable[int], *,
              timeout: float = 5.0) -> dict[int, int | None]:
    """The group's committed offsets in Kafka (None: nothing committed)."""
    found = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=timeout)
    return {tp.partition: (tp.offset if tp.offset >= 0 else None) for tp in found}


class WatermarkPoller:
    """Keeps the latest watermarks of some topics, refreshed every `interval` seconds in a thread.

    Readers get the last good answer (`latest`) and its age; a broker outage
    shows as `error` and a growing age, never as a blocked scrape.
    """

    def __init__(self, kafka: Mapping[str, str], topics: Iterable[str], *, interval: float = 2.0):
        self.kafka = dict(kafka)
        self.topics = sorted(set(topics))
        self.interval = interval
        self.latest: dict[str, dict[int, Watermarks]] = {}
        self.updated_at: float | None = None
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sinkframe-watermarks", daemon=True)

    def start(self) -> "WatermarkPoller":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def high(self, topic: str, partition: int) -> Watermarks | None:
        return self.latest.get(topic, {}).get(partition)

    def _run(self) -> None:
        consumer = None
        try:
            consumer = monitor_consumer(self.kafka)
            while not self._stop.is_set():
                self._refresh(consumer)
                self._stop.wait(self.interval)
        except Exception as err:  # noqa: BLE001 - monitoring must never take the sink down
            log.warning("watermark monitor stopped: %s", err)
            self.error = str(err)
        finally:
            if consumer is not None:
                consumer.close()

    def _refresh(self, consumer: Consumer) -> None:
        latest = {}
        try:
            for topic in self.topics:
                latest[topic] = watermarks(consumer, topic, topic_partitions(consumer, topic))
        except KafkaException as err:
            if self.error is None:
                log.warning("reading partition watermarks failed (lag metrics go stale): %s", err)
            self.error = str(err)
            return
        self.latest = latest
        self.updated_at = time.time()
        self.error = None
