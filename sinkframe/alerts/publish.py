"""Alert transitions to a Kafka topic, at least once, like the dead-letter topic.

A topic cannot join the database transaction, so transitions are produced and
flushed after the batch's offsets compare-and-set succeeded and before it
commits (AlertRecorder.after_offsets): a fenced batch sends nothing, and a crash
between the flush and the commit sends a transition again when the batch is
re-read, but never loses one. Each message is JSON,
keyed by `alert:key` so that one device's transitions of one rule stay in order.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import orjson

from sinkframe.alerts.engine import Transition
from sinkframe.pipeline.write.deadletter import FlushedProducer


def transition_message(connector: str, t: Transition) -> dict:
    return {
        "connector": connector, "alert": t.alert, "key": t.alert_key, "state": str(t.state),
        "severity": t.severity, "value": t.value,
        "event_time": t.event_time.isoformat() if t.event_time is not None else None,
        "source": {"topic": t.source_topic, "partition": t.source_partition, "offset": t.source_offset},
    }


class AlertPublisher(FlushedProducer):
    def __init__(self, kafka: Mapping[str, str], *, topic: str, connector: str, timeout: float = 30.0):
        super().__init__(kafka, topic=topic, connector=connector, kind="alerts", noun="alert transitions",
                         timeout=timeout, purpose="alerts")

    def send(self, transitions: Sequence[Transition]) -> None:
        """Produce and flush; raise RetriableWriteError (the batch is retried) if any is not acknowledged."""
        self.send_all([(f"{t.alert}:{t.alert_key}".encode(), orjson.dumps(transition_message(self.connector, t)),
                        None) for t in transitions])
