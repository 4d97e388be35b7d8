"""A fenced batch sends nothing to the alerts topic (real PostgreSQL, real broker, the writer itself).

Fenced: another consumer stored the partition's offsets first, so the batch's
compare-and-set finds them moved and the transaction rolls back. Its alert
transitions must not reach `alerts_topic`: the topic is sent to only past the
compare-and-set. The same batch written with the offsets the database holds
then publishes its transition once, which also shows the check below would
see a message that was sent. And still at least once: a batch that dies after
publishing and before its commit publishes again when it is written again,
while the table holds the transition once.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass

import pytest
from confluent_kafka import Consumer, Message
from psycopg_pool import ConnectionPool

from sinkframe.alerts import parse_rules
from sinkframe.alerts.publish import AlertPublisher
from sinkframe.alerts.recorder import AlertRecorder
from sinkframe.errors import PartitionFenced, RetriableWriteError
from sinkframe.mapping.registry import PluginRegistry
from sinkframe.pipeline.batch import BatchBuilder
from sinkframe.pipeline.consume.positions import PartitionPositions
from sinkframe.pipeline.write.writer import BatchWriter, ResolvedTarget

from sinktest.db import create_tables, query

TOPIC, GROUP = "readings.fenced", "sinkframe-fenced"


def received(bootstrap: str, topic: str, *, seconds: float) -> list[dict]:
    """Everything on `topic`, read for `seconds` from the beginning."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{topic}-{time.monotonic_ns()}",
                         "auto.offset.reset": "earliest", "session.timeout.ms": 6000})
    consumer.subscribe([topic])
    found, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            found.append(json.loads(message.value()))
    consumer.close()
    return found


@dataclass
class Alerting:
    writer: BatchWriter
    mapper: object
    alerts_topic: str


@pytest.fixture
def alerting(pg_dsn, kafka_bootstrap, new_topic):
    create_tables(pg_dsn)
    mapper = PluginRegistry().get("smart_breaker")({})
    targets = {role: ResolvedTarget(role, t.default_table, t) for role, t in mapper.targets.items()}
    rules, problems = parse_rules([{"name": "hot", "when": "temperature > 70"}], mapper.targets,
                                  where=lambda path: str(path))
    assert not problems
    alerts_topic = new_topic(partitions=1)
    publisher = AlertPublisher({"bootstrap.servers": kafka_bootstrap}, topic=alerts_topic, connector="fenced")
    recorder = AlertRecorder("fenced", rules, targets, publisher=publisher)
    with ConnectionPool(pg_dsn, min_size=1, max_size=2, open=True) as pool:
        writer = BatchWriter(pool, connector="fenced", group_id=GROUP, topic=TOPIC, targets=targets,
                             parts=[recorder])
        writer.ensure_framework_tables()
        yield Alerting(writer, mapper, alerts_topic)
        recorder.close()


def test_a_fenced_batch_sends_nothing_to_the_alerts_topic(alerting, pg_dsn, kafka_bootstrap):
    writer = alerting.writer
    builder = BatchBuilder(TOPIC, alerting.mapper, positions=PartitionPositions("fenced", TOPIC))
    reading = {"device_id": "dev-1", "timestamp": 1_700_000_000, "measurements": {"temperature": 80.0}}
    builder.add([Message(topic=TOPIC, partition=0, offset=0, key=b"dev-1", value=json.dumps(reading).encode(),
                         timestamp=(1, 1_700_000_000_000))])
    batch = builder.take()
    # Another consumer owns the partition now and stored its position first.
    query(pg_dsn, "INSERT INTO sinkframe_offsets (consumer_group, topic, partition, next_offset) "
                  "VALUES (%s, %s, 0, 1) RETURNING 1", [GROUP, TOPIC])

    with pytest.raises(PartitionFenced):
        writer.write(batch, {0: None})  # this consumer believes nothing is stored yet

    assert received(kafka_bootstrap, alerting.alerts_topic, seconds=4) == []
    assert query(pg_dsn, "SELECT count(*) FROM sinkframe_alerts") == [(0,)]

    outcome = writer.write(batch, {0: 1})  # the position the database holds: the compare-and-set succeeds
    assert [str(t.state) for t in outcome.transitions] == ["firing"]
    sent = received(kafka_bootstrap, alerting.alerts_topic, seconds=4)
    assert [(m["alert"], m["key"], m["state"]) for m in sent] == [("hot", "dev-1", "firing")]


class CrashBeforeCommit:
    """A transaction part that fails after every other side effect, where a crash before the commit would land."""

    def ensure_tables(self, conn) -> None:
        pass

    def write(self, cur, batch, outcome) -> None:
        pass

    def after_offsets(self, outcome) -> None:
        raise RetriableWriteError("the process dies here, before the commit")

    def close(self) -> None:
        pass


def test_a_batch_that_does_not_commit_after_publishing_publishes_again_at_least_once(alerting, pg_dsn,
                                                                                        kafka_bootstrap):
    writer = alerting.writer
    builder = BatchBuilder(TOPIC, alerting.mapper, positions=PartitionPositions("fenced", TOPIC))
    reading = {"device_id": "dev-2", "timestamp": 1_700_000_000, "measurements": {"temperature": 90.0}}
    builder.add([Message(topic=TOPIC, partition=0, offset=0, key=b"dev-2", value=json.dumps(reading).encode(),
                         timestamp=(1, 1_700_000_000_000))])
    batch = builder.take()
    parts = writer.parts
    writer.parts = (*parts, CrashBeforeCommit())
    with pytest.raises(RetriableWriteError):
        writer.write(batch, {0: None})
    writer.parts = parts
    assert query(pg_dsn, "SELECT count(*) FROM sinkframe_alerts") == [(0,)]  # rolled back

    writer.write(batch, {0: None})  # read again after the restart: the same transition, committed once
    sent = received(kafka_bootstrap, alerting.alerts_topic, seconds=4)
    assert [(m["key"], m["state"]) for m in sent] == [("dev-2", "firing"), ("dev-2", "firing")]
    assert query(pg_dsn, "SELECT alert_key, state FROM sinkframe_alerts") == [("dev-2", "firing")]
