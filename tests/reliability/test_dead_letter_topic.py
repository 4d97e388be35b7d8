"""Dead letters on a Kafka topic: original bytes, the reason in headers, never lost.

The topic is produced to and flushed before the batch's database transaction
commits (the topic is at-least-once, the table exactly-once).
"""
from __future__ import annotations

import json
import time

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from psycopg_pool import ConnectionPool

from sinkframe.devservices import free_port
from sinkframe.errors import RetriableWriteError
from sinkframe.pipeline.batch import DeadLetter
from sinkframe.pipeline.write.deadletter import DeadLetterProducer

from sinktest.config import sink_env, write_connector
from sinktest.db import create_tables, dead_letters, query
from sinktest.sinks import run_until_written

from test_poison_write import batch_of, make_writer, raw_message


def read_topic(bootstrap: str, topic: str, count: int, timeout: float = 30) -> list:
    """Every message of `topic` (assigned directly: no group, no join delay)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False})
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    got, deadline = [], time.monotonic() + timeout
    try:
        while len(got) < count and time.monotonic() < deadline:
            got += [m for m in consumer.consume(100, 0.2) if m.error() is None]
        got += [m for m in consumer.consume(100, 0.5) if m.error() is None]  # a duplicate would show now
    finally:
        consumer.close()
    return got


def test_bad_records_go_to_the_dead_letter_topic_and_table_with_original_bytes_and_reason(
        kafka_bootstrap, pg_dsn, new_topic, tmp_path):
    topic = new_topic(partitions=2)
    dlq = f"{topic}.dlq"
    create_tables(pg_dsn)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    sent = {
        "good-1": json.dumps(raw_message(1)).encode(),
        "not-json": b"{oops",
        "nul-jsonb": json.dumps({"device_id": "x", "payload": {"s": "\u0000"}}).encode(),
        "no-device": b'{"payload": 1}',
        "good-2": json.dumps(raw_message(2)).encode(),
    }
    for key, value in sent.items():
        producer.produce(topic, key=key.encode(), value=value, headers=[("origin", b"gateway-7")])
    assert producer.flush(30) == 0
    extra = f"  dead_letter:\n    table: sinkframe_dead_letters\n    topic: {dlq}\n"
    connector = write_connector(tmp_path, name="dlq", topic=topic, extra=extra)

    run_until_written([connector], sink_env(kafka_bootstrap, pg_dsn), messages=len(sent))

    assert query(pg_dsn, "SELECT count(*) FROM iot_raw_data") == [(2,)]
    letters = read_topic(kafka_bootstrap, dlq, 3)
    assert sorted(m.key() for m in letters) == [b"no-device", b"not-json", b"nul-jsonb"]
    by_key = {m.key().decode(): m for m in letters}
    expected = {"not-json": ("decode", "RecordError", None), "no-device": ("map", "ValueError", None),
                "nul-jsonb": ("write", "UntranslatableCharacter", "22P05")}
    table = {(r[0], r[1], r[2]): r for r in dead_letters(pg_dsn)}
    for key, (stage, error_class, sqlstate) in expected.items():
        message = by_key[key]
        assert message.value() == sent[key]
        headers = {k: v.decode() for k, v in message.headers()}
        assert headers["origin"] == "gateway-7"  # the record's own headers are kept
        assert headers["sinkframe.connector"] == "dlq"
        assert headers["sinkframe.error.stage"] == stage
        assert headers["sinkframe.error.class"] == error_class
        assert headers.get("sinkframe.error.sqlstate") == sqlstate
        assert headers["sinkframe.original.topic"] == topic
        coordinates = (topic, int(headers["sinkframe.original.partition"]),
                       int(headers["sinkframe.original.offset"]))
        assert int(headers["sinkframe.original.timestamp"]) > 1_700_000_000_000
        row = table[coordinates]  # the same dead letter is in the table
        assert (row[3], row[5], row[7], row[8]) == (stage, headers["sinkframe.error.message"], key.encode(),
                                                    sent[key])


def test_topic_only_destination_writes_no_table(kafka_bootstrap, pg_dsn, new_topic, tmp_path):
    topic = new_topic()
    dlq = f"{topic}.dlq"
    create_tables(pg_dsn)
    from sinkframe.devservices import produce

    produce(kafka_bootstrap, topic, [b"not json", raw_message(1)])
    extra = f"  dead_letter:\n    table: null\n    topic: {dlq}\n"
    connector = write_connector(tmp_path, name="dlq-only", topic=topic, extra=extra)
    run_until_written([connector], sink_env(kafka_bootstrap, pg_dsn), messages=2)
    assert [m.value() for m in read_topic(kafka_bootstrap, dlq, 1)] == [b"not json"]
    assert query(pg_dsn, "SELECT to_regclass('sinkframe_dead_letters') IS NULL") == [(True,)]
    assert query(pg_dsn, "SELECT count(*) FROM iot_raw_data") == [(1,)]


def test_an_unreachable_dead_letter_topic_fails_the_flush_as_retriable():
    # A real producer against a port nothing listens on: it must say so, not pretend.
    producer = DeadLetterProducer({"bootstrap.servers": f"127.0.0.1:{free_port()}"}, topic="dlq",
                                  connector="c", timeout=1.5)
    letter = DeadLetter("t", 0, 7, None, b"k", b"v", None, "decode", "RecordError", "bad")
    with pytest.raises(RetriableWriteError, match=r"dead-letter topic dlq: 1 of 1 dead letters not delivered"):
        producer.send([letter])


def test_when_the_dead_letter_topic_fails_nothing_of_the_batch_commits(pg_dsn):
    create_tables(pg_dsn)
    with ConnectionPool(pg_dsn, min_size=1, max_size=1) as pool:
        writer, mapper = make_writer(pool)
        batch = batch_of(writer, mapper, [(0, o, raw_message(o, {"s": "\u0000"} if o == 2 else None))
                                          for o in range(5)])

        def broker_down(letters):
            assert [(d.offset, d.stage) for d in letters] == [(2, "write")]
            raise RetriableWriteError("dead-letter topic unreachable")

        with pytest.raises(RetriableWriteError):
            writer.write(batch, {0: None}, before_commit=broker_down)
        assert query(pg_dsn, "SELECT count(*) FROM iot_raw_data") == [(0,)]
        assert dead_letters(pg_dsn) == []
        assert query(pg_dsn, "SELECT count(*) FROM sinkframe_offsets") == [(0,)]

        sent = []
        writer.write(batch, {0: None}, before_commit=sent.extend)  # the retry goes through
        assert [d.offset for d in sent] == [2]
        assert query(pg_dsn, "SELECT count(*) FROM iot_raw_data") == [(4,)]
