"""Alert transitions to a Kafka topic, at least once, like the dead-letter topic.

A topic cannot join the database transaction, so transitions are produced and
flushed before the batch commits: a crash between the two sends a transition
again when the batch is re-read, but never loses one. Each message is JSON,
keyed by `alert:key` so that one device's transitions of one rule stay in order.
"""
from __future__ import annotations

import logging
from typing import Mapping, Sequence

import orjson
from confluent_kafka import KafkaError, KafkaException, Producer

from sinkframe.alerts.engine import Transition
from sinkframe.errors import RetriableWriteError
from sinkframe.pipeline.deadletter import producer_properties


def transition_message(connector: str, t: Transition) -> dict:
    return {
        "connector": connector, "alert": t.alert, "key": t.alert_key, "state": str(t.state),
        "severity": t.severity, "value": t.value,
        "event_time": t.event_time.isoformat() if t.event_time is not None else None,
        "source": {"topic": t.source_topic, "partition": t.source_partition, "offset": t.source_offset},
    }


class AlertPublisher:
    def __init__(self, kafka: Mapping[str, str], *, topic: str, connector: str, timeout: float = 30.0):
        self.topic = topic
        self.connector = connector
        self.timeout = timeout
        props = producer_properties(kafka, connector)
        props["client.id"] = f"sinkframe-{connector}-alerts"
        props["message.timeout.ms"] = str(int(timeout * 1000))
        self._producer = Producer(props, logger=logging.getLogger("sinkframe.kafka"))

    def send(self, transitions: Sequence[Transition]) -> None:
        """Produce and flush; raise RetriableWriteError (the batch is retried) if any is not acknowledged."""
        failures: list[KafkaError] = []

        def delivered(err, _msg):
            if err is not None:
                failures.append(err)

        try:
            for t in transitions:
                self._produce(t, delivered)
        except KafkaException as err:
            raise RetriableWriteError(f"connector {self.connector}: alerts topic {self.topic}: {err}; "
                                      "the batch will be retried") from err
        remaining = self._producer.flush(self.timeout)
        if remaining or failures:
            reason = failures[0].str() if failures else f"not acknowledged within {self.timeout:.0f}s"
            raise RetriableWriteError(f"connector {self.connector}: alerts topic {self.topic}: "
                                      f"{remaining + len(failures)} of {len(transitions)} transitions not "
                                      f"delivered ({reason}); the batch is not committed and will be retried")

    def _produce(self, t: Transition, delivered) -> None:
        value = orjson.dumps(transition_message(self.connector, t))
        while True:
            try:
                self._producer.produce(self.topic, key=f"{t.alert}:{t.alert_key}".encode(), value=value,
                                       on_delivery=delivered)
                return
            except BufferError:  # local queue full: let it drain
                self._producer.poll(0.1)

    def close(self) -> None:
        self._producer.flush(min(self.timeout, 5.0))
