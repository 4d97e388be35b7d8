"""The database holds an offset beyond a partition's log end (topic re-created or truncated): said out loud.

The topic is made anew for each test and the offsets table is given a stored
offset far past partition 0's log, as after the topic was deleted and re-created
(or the memory-only test broker restarted) while the database kept its offsets.
Partition 1's stored offset is within its log. Read from the stored offset,
partition 0 would wait for ever while its new records were skipped as stored.

- default policy `stop`: partition 0 stops with an error naming topic,
  partition, stored offset and high watermark, and shows in the stats;
  partition 1 goes on;
- `consumer.stored_offset_past_log_end: earliest`: partition 0 is read again
  from its first record, the jump is logged and counted, and the stored offset
  moves back to the new log's end: every record exactly once.
"""
from __future__ import annotations

import json
import logging
import time

import psycopg
import pytest
from confluent_kafka import Producer

from sinkframe.devservices import create_topics, free_port, produce
from sinkframe.pipeline.write.offsets import CREATE_OFFSETS_TABLE

from sinktest.config import sink_env, write_connector
from sinktest.db import create_tables, query, row_counts
from sinktest.liveness import messages
from sinktest.monitor import metric_sum, scrape
from sinktest.sinks import InProcessSink
from sinktest.waiting import wait_for

pytestmark = pytest.mark.slow

PER_PARTITION = 120
STORED_PAST_END = 5_000
STORED_WITHIN = 20  # partition 1: its first 20 records are "already written"


def setup(kafka_bootstrap, pg_dsn, new_topic, tmp_path, *, extra: str = ""):
    create_tables(pg_dsn)
    topic = new_topic(partitions=2)
    produce_to_each(kafka_bootstrap, topic)
    connector = write_connector(tmp_path, name="log-end", topic=topic, max_rows=100, max_wait_ms=50, extra=extra)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(CREATE_OFFSETS_TABLE)
        conn.execute("INSERT INTO sinkframe_offsets (consumer_group, topic, partition, next_offset) "
                     "VALUES (%s, %s, 0, %s), (%s, %s, 1, %s)",
                     ("sinkframe-log-end", topic, STORED_PAST_END, "sinkframe-log-end", topic, STORED_WITHIN))
    return topic, connector, sink_env(kafka_bootstrap, pg_dsn)


def produce_to_each(bootstrap: str, topic: str) -> None:
    """PER_PARTITION messages into each of partitions 0 and 1."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for partition in (0, 1):
        for message in messages(partition * PER_PARTITION, PER_PARTITION):
            producer.produce(topic, json.dumps(message).encode(), partition=partition)
    assert producer.flush(30) == 0


def rows_of(dsn: str, partition: int) -> int:
    return query(dsn, "SELECT count(*) FROM iot_raw_data WHERE source_partition = %s", (partition,))[0][0]


def test_by_default_a_partition_whose_stored_offset_is_past_the_log_end_stops_with_a_clear_error(
        kafka_bootstrap, pg_dsn, new_topic, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    topic, connector, env = setup(kafka_bootstrap, pg_dsn, new_topic, tmp_path)
    said = f"{topic}[0]: stored offset {STORED_PAST_END} is past the end of the log (high watermark {PER_PARTITION})"
    with InProcessSink([connector], env, metrics_port=free_port()) as sink:
        task = sink.tasks[0]
        wait_for(lambda: rows_of(pg_dsn, 1) == PER_PARTITION - STORED_WITHIN, timeout=30,
                 message="partition 1 to go on")
        wait_for(lambda: any(said in r.getMessage() for r in caplog.records), timeout=30,
                 message="partition 0 to be said past the log end")
        assert task.stats.partitions_past_log_end == {0: {"stored_offset": STORED_PAST_END,
                                                          "high_watermark": PER_PARTITION}}
        assert task.failure is None and task.stats.state == "running"
        assert task.stats.log_end_restarts == 0
        samples = scrape(sink.url)
        assert metric_sum(samples, "sinkframe_partitions_past_log_end") == 1
        assert metric_sum(samples, "sinkframe_log_end_restarts_total") == 0
    assert rows_of(pg_dsn, 0) == 0
    assert query(pg_dsn, "SELECT partition, next_offset FROM sinkframe_offsets ORDER BY 1") == [
        (0, STORED_PAST_END), (1, PER_PARTITION)]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(said in e and "stored_offset_past_log_end: earliest" in e for e in errors), errors


def test_opted_in_a_partition_whose_stored_offset_is_past_the_log_end_restarts_from_the_earliest_offset(
        kafka_bootstrap, pg_dsn, new_topic, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    extra = "consumer:\n  stored_offset_past_log_end: earliest\n"
    topic, connector, env = setup(kafka_bootstrap, pg_dsn, new_topic, tmp_path, extra=extra)
    expected = 2 * PER_PARTITION - STORED_WITHIN
    with InProcessSink([connector], env) as sink:
        task = sink.tasks[0]
        wait_for(lambda: row_counts(pg_dsn)[0] >= expected, timeout=30, message=f"{expected} rows")
        wait_for(lambda: query(pg_dsn, "SELECT sum(next_offset) FROM sinkframe_offsets")[0][0] == 2 * PER_PARTITION,
                 timeout=15, message="the stored offsets at the new log ends")
        assert task.stats.log_end_restarts == 1 and task.stats.partitions_past_log_end == {}
    assert row_counts(pg_dsn) == (expected, expected)
    assert rows_of(pg_dsn, 0) == PER_PARTITION
    assert query(pg_dsn, "SELECT partition, next_offset FROM sinkframe_offsets ORDER BY 1") == [
        (0, PER_PARTITION), (1, PER_PARTITION)]
    assert any(f"{topic}[0]: the database holds offset {STORED_PAST_END} but the log ends at {PER_PARTITION}"
               in r.getMessage() and "restarting" in r.getMessage() for r in caplog.records)


def test_a_broker_that_restarts_empty_under_a_running_sink_is_noticed_and_opted_in_restarts_from_earliest(
        tansu_broker, pg_dsn, tmp_path, caplog):
    """The case of the issue: the (memory-only) broker restarts empty while the sink runs.

    The database holds offset 300; the re-created topic's log starts at 0 again.
    Unnoticed, its first 300 records would be skipped as stored; with
    `earliest`, every record of the new log is written once.
    """
    caplog.set_level(logging.INFO)
    create_tables(pg_dsn)
    topic = f"log-end-restart.{time.monotonic_ns()}"
    create_topics(tansu_broker.bootstrap, [topic], partitions=1)
    produce(tansu_broker.bootstrap, topic, messages(0, 300))
    extra = "consumer:\n  stored_offset_past_log_end: earliest\n"
    connector = write_connector(tmp_path, name="log-end-restart", topic=topic, max_rows=100, max_wait_ms=50,
                                extra=extra)
    with InProcessSink([connector], sink_env(tansu_broker.bootstrap, pg_dsn)) as sink:
        task = sink.tasks[0]
        wait_for(lambda: row_counts(pg_dsn)[0] == 300, timeout=30, message="the first 300 rows")
        tansu_broker.restart()  # memory-only: topic, messages and group are gone
        create_topics(tansu_broker.bootstrap, [topic], partitions=1)
        wait_for(lambda: task.stats.log_end_restarts == 1, timeout=90,
                 message="the sink to notice the stored offset past the new log's end")
        produce(tansu_broker.bootstrap, topic, messages(1_000, 500))
        wait_for(lambda: row_counts(pg_dsn)[0] >= 800, timeout=60, message="the new log's 500 records")
        time.sleep(1.0)  # a duplicate would land within a batch interval
        assert task.failure is None
    # The new log's offsets 0..299 repeat the old log's: tell the two logs apart by payload.
    assert row_counts(pg_dsn)[0] == 800
    new_log = query(pg_dsn, "SELECT count(*), min(source_offset), max(source_offset) FROM iot_raw_data "
                            "WHERE (payload->>'i')::int >= 1000")
    assert new_log == [(500, 0, 499)]
    assert query(pg_dsn, "SELECT next_offset FROM sinkframe_offsets") == [(500,)]
