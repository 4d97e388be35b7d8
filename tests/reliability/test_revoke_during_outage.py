"""A revocation while a write's first attempt hangs on a dead database: the group settles, nothing is lost.

The sink writes through a FaultProxy in front of PostgreSQL. A write is held in
flight, then the proxy swallows every byte (a partition: no reset, so the write
waits in its first attempt, not in a retry). A second member joins the group
meanwhile. The sink's revocation callback must not wait for the database: the
group rebalances within the session timeout. The newcomer leaves again, the
partitions come back (their offsets are read once the database answers, outside
the callback), the proxy heals, and every message lands exactly once.
"""
from __future__ import annotations

import logging
import time

import psycopg
import pytest
from confluent_kafka import Consumer

from sinkframe.devservices import produce

from sinktest.config import STEADY_GROUP_JOIN, sink_env, write_connector
from sinktest.db import create_tables, query, row_counts
from sinktest.liveness import IN_FLIGHT, SLOW_WRITES, messages, proxy_for, slow_writes, through
from sinktest.sinks import InProcessSink
from sinktest.waiting import wait_for

pytestmark = pytest.mark.slow

SESSION_TIMEOUT = int(STEADY_GROUP_JOIN["SINKFRAME_KAFKA_SESSION_TIMEOUT_MS"]) / 1000
# Longer than the test needs the partition to last: the rebalance cannot owe anything to it.
WRITE_TIMEOUT = 25.0


def joined_member(bootstrap: str, group: str, topic: str) -> Consumer:
    """A plain consumer in the sink's group (it reads nothing and commits nothing): it makes the group rebalance."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": "false",
                         "session.timeout.ms": STEADY_GROUP_JOIN["SINKFRAME_KAFKA_SESSION_TIMEOUT_MS"],
                         "heartbeat.interval.ms": STEADY_GROUP_JOIN["SINKFRAME_KAFKA_HEARTBEAT_INTERVAL_MS"]})
    def hold(c, partitions):
        c.assign(partitions)
        c.pause(partitions)

    consumer.subscribe([topic], on_assign=hold)
    return consumer


def assigned(consumer: Consumer) -> bool:
    consumer.poll(0.1)  # serves the group protocol
    return bool(consumer.assignment())


def test_a_revocation_during_the_first_write_attempt_of_an_outage_settles_the_group_and_loses_nothing(
        kafka_bootstrap, pg_dsn, new_topic, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    create_tables(pg_dsn)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(SLOW_WRITES)
    topic = new_topic(partitions=4)
    first, second = 800, 600
    total = first + second
    produce(kafka_bootstrap, topic, messages(0, first), key=lambda m: m["device_id"].encode())
    connector = write_connector(tmp_path, name="revoke-outage", topic=topic, max_rows=200, max_wait_ms=50)
    newcomer = None
    with proxy_for(pg_dsn) as proxy:
        env = sink_env(kafka_bootstrap, through(proxy, pg_dsn), SINKFRAME_WRITE_TIMEOUT_SECONDS=str(WRITE_TIMEOUT))
        sink = InProcessSink([connector], env).start()
        try:
            task = sink.tasks[0]
            wait_for(lambda: row_counts(pg_dsn)[0] == first, timeout=30, message="the first messages")
            slow_writes(pg_dsn, 1.0)
            produce(kafka_bootstrap, topic, messages(first, second), key=lambda m: m["device_id"].encode())
            wait_for(lambda: query(pg_dsn, IN_FLIGHT)[0][0] > 0, timeout=15, message="a write in flight")
            proxy.blackhole()
            time.sleep(0.5)
            assert task.stats.write_retries == 0, "the write must still be in its first attempt"
            assignments = task.stats.assignments

            newcomer = joined_member(kafka_bootstrap, connector_group(task), topic)
            joined_at = time.monotonic()
            wait_for(lambda: assigned(newcomer), timeout=SESSION_TIMEOUT * 3,
                     message="the newcomer's assignment (the group settling) while the database is unreachable")
            settled_after = time.monotonic() - joined_at
            wait_for(lambda: task.stats.assignments > assignments, timeout=SESSION_TIMEOUT * 2,
                     message="the sink's own new assignment")
            assert task.stats.write_retries == 0 and row_counts(pg_dsn)[0] == first  # still cut off

            newcomer.close()  # leaves: the sink gets every partition back, still during the outage
            newcomer = None
            wait_for(lambda: len(task.stats.assigned) == 4, timeout=SESSION_TIMEOUT * 3,
                     message="all partitions back with the sink")
            slow_writes(pg_dsn, None)
            proxy.heal()
            wait_for(lambda: row_counts(pg_dsn)[0] >= total, timeout=WRITE_TIMEOUT + 40,
                     message=f"all {total} rows after the heal")
            time.sleep(1.0)  # a duplicate would land within a batch interval
            assert task.failure is None
        finally:
            if newcomer is not None:
                newcomer.close()
            sink.stop()
            sink.join(30)
    assert row_counts(pg_dsn) == (total, total)
    assert query(pg_dsn, "SELECT sum(next_offset) FROM sinkframe_offsets") == [(total,)]
    assert any("giving it up" in r.getMessage() for r in caplog.records)
    assert settled_after < SESSION_TIMEOUT * 2
    logging.getLogger(__name__).warning("group settled %.1fs after a member joined during the partition",
                                        settled_after)


def connector_group(task) -> str:
    return task.connector.group_id
