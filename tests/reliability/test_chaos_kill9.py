"""Chaos: kill -9 the sink at random moments, several times, while a producer sends.

After each kill the sink is started again; in the end the database holds exactly
the messages produced, and no (topic, partition, offset) twice.
"""
from __future__ import annotations

import random
import signal
import time

import pytest

from sinktest.config import sink_env, write_connector
from sinktest.db import create_tables, query, row_counts
from sinktest.sinks import run_process_until, start_sink_process
from sinktest.waiting import wait_for

from test_rebalance import produce_steadily

pytestmark = pytest.mark.slow

SEED = 20240611
KILLS = 5


def test_kill9_at_random_moments_while_producing_ends_exactly_once(kafka_bootstrap, pg_dsn, new_topic, tmp_path):
    rng = random.Random(SEED)
    topic = new_topic(partitions=3)
    create_tables(pg_dsn)
    total = 24_000
    connector = write_connector(tmp_path, name="chaos", topic=topic, max_rows=700, max_wait_ms=50)
    # A short session: a kill -9'd member leaves the group after 2 s, not 6.
    env = sink_env(kafka_bootstrap, pg_dsn, SINKFRAME_KAFKA_SESSION_TIMEOUT_MS="2000",
                   SINKFRAME_KAFKA_HEARTBEAT_INTERVAL_MS="500")
    log = tmp_path / "sink.log"
    producer = produce_steadily(kafka_bootstrap, topic, 0, total, per_second=1_500)
    seen_after_kill = []

    for kill in range(KILLS):
        assignments = log.read_text().count(": assigned ") if log.exists() else 0
        sink = start_sink_process([connector], env, log)
        # A killed member stays in the group until its session times out; wait until
        # this one owns partitions, then kill it at a random moment of its work.
        wait_for(lambda: log.read_text().count(": assigned ") > assignments, timeout=60,
                 message=f"run {kill + 1} to get partitions")
        time.sleep(rng.uniform(0.05, 2.5))
        sink.send_signal(signal.SIGKILL)
        sink.wait(10)
        landed, distinct = row_counts(pg_dsn)
        assert landed == distinct, f"duplicate rows after kill {kill + 1}: {landed} rows, {distinct} distinct"
        seen_after_kill.append(landed)

    producer.join(60)
    assert not producer.is_alive()
    run_process_until([connector], env, log, lambda: row_counts(pg_dsn)[0] >= total, timeout=60,
                      message=f"all {total} rows")
    assert row_counts(pg_dsn) == (total, total), log.read_text()[-3000:]
    assert query(pg_dsn, "SELECT sum(next_offset) FROM sinkframe_offsets") == [(total,)]
    # The kills really landed while work was going on, not all before or after it.
    assert any(0 < n < total for n in seen_after_kill), seen_after_kill
    assert query(pg_dsn, "SELECT count(*) FROM (SELECT payload->>'i' FROM iot_raw_data GROUP BY 1) t") == [(total,)]
