"""Small Kafka helpers for the demo, tests and benchmark: create topics, produce messages."""
from __future__ import annotations

import json
from typing import Any, Iterable

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic


def create_topics(bootstrap: str, topics: Iterable[str], *, partitions: int = 1, timeout: float = 30) -> None:
    """Create topics that do not exist yet (existing ones are left alone)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = set(admin.list_topics(timeout=timeout).topics)
    wanted = [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in topics if t not in existing]
    if not wanted:
        return
    for name, future in admin.create_topics(wanted, operation_timeout=timeout).items():
        try:
            future.result(timeout)
        except KafkaException as err:
            if "TOPIC_ALREADY_EXISTS" not in str(err):
                raise


def produce(bootstrap: str, topic: str, messages: Iterable[Any], *, key=None,
            config: dict | None = None) -> int:
    """Produce messages (dicts/lists are JSON-encoded, bytes sent as they are); returns the count.

    `key` is a function of the message giving the key bytes (e.g. the device id), or None.
    """
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, **(config or {})})
    count = 0
    for message in messages:
        value = message if isinstance(message, (bytes, type(None))) else json.dumps(message).encode()
        while True:
            try:
                producer.produce(topic, value=value, key=key(message) if key else None)
                break
            except BufferError:  # local queue full: let it drain
                producer.poll(0.1)
        count += 1
        if count % 10_000 == 0:
            producer.poll(0)
    remaining = producer.flush(60)
    if remaining:
        raise RuntimeError(f"{remaining} messages to {topic} were not delivered within 60 s")
    return count
