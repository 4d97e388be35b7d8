"""kill -9 mid-stream and SIGTERM: the database ends with every message exactly once."""
from __future__ import annotations

import signal
import time

import pytest

from sinkframe.devservices import create_topics, produce

from sinktest.db import query, row_counts
from sinktest.paths import CONFIGS
from sinktest.sinks import start_sink_process
from sinktest.waiting import wait_for

pytestmark = pytest.mark.slow


def smart_breaker_messages(n: int, start: int = 0):
    for i in range(start, start + n):
        yield {"device_id": f"breaker-{i % 50}", "timestamp": 1795000000 + i, "device_type": "smart_breaker",
               "measurements": {"voltage_phase_a": 230.0 + i % 10, "current_phase_a": 5.0, "trip_count": i % 3,
                                "breaker_status": "closed"}}


def counts(dsn: str):
    try:
        return row_counts(dsn, "smart_breaker_data")
    except Exception:  # the table is created by the sink at start-up
        return (0, 0)


def test_kill9_mid_stream_then_restart_loses_and_duplicates_nothing(kafka_bootstrap, sink_env, topics, tmp_path):
    topic = topics["SMART_BREAKER_TOPIC"]
    create_topics(kafka_bootstrap, [topic], partitions=3)
    total = 60_000
    produce(kafka_bootstrap, topic, smart_breaker_messages(total), key=lambda m: m["device_id"].encode())
    dsn = sink_env["SINKFRAME_DATABASE_URL"]
    # Small batches so that the kill lands between many commits, not after the last one.
    env = {**sink_env, "SINKFRAME_BATCH_MAX_ROWS": "2000"}
    log = tmp_path / "sink.log"

    for kill_number in range(3):
        sink = start_sink_process([CONFIGS / "smart_breaker.yaml"], env, log)
        already = counts(dsn)[0]
        wait_for(lambda: counts(dsn)[0] > already, timeout=60, message="rows to land before the kill")
        sink.send_signal(signal.SIGKILL)
        sink.wait(10)
        landed, distinct = counts(dsn)
        assert landed == distinct, f"duplicate rows after kill {kill_number}: {landed} rows, {distinct} distinct"
        if landed == total:
            break

    sink = start_sink_process([CONFIGS / "smart_breaker.yaml"], env, log)
    try:
        wait_for(lambda: counts(dsn)[0] >= total, timeout=90, message=f"all {total} rows")
        time.sleep(1.5)  # anything extra (a duplicate) would land within a batch interval
        assert counts(dsn) == (total, total), log.read_text()[-3000:]
        stored = query(dsn, "SELECT sum(next_offset) FROM sinkframe_offsets WHERE topic = %s", (topic,))
        assert stored == [(total,)]
    finally:
        sink.send_signal(signal.SIGTERM)
        sink.wait(30)


def test_sigterm_writes_in_flight_batch_and_exits_zero(kafka_bootstrap, sink_env, topics, tmp_path):
    topic = topics["SMART_BREAKER_TOPIC"]
    create_topics(kafka_bootstrap, [topic], partitions=1)
    produce(kafka_bootstrap, topic, smart_breaker_messages(500))
    dsn = sink_env["SINKFRAME_DATABASE_URL"]
    # A long max wait: without a graceful flush these rows would still be in memory at SIGTERM.
    env = {**sink_env, "SINKFRAME_BATCH_MAX_WAIT_MS": "600000"}
    log = tmp_path / "sink.log"
    sink = start_sink_process([CONFIGS / "smart_breaker.yaml"], env, log)
    wait_for(lambda: "assigned" in log.read_text(), timeout=60, message="partition assignment")
    time.sleep(1.0)  # let it consume the 500 messages into its (unwritten) batch
    assert counts(dsn)[0] == 0
    sink.send_signal(signal.SIGTERM)
    started = time.monotonic()
    assert sink.wait(15) == 0, log.read_text()[-3000:]
    assert time.monotonic() - started < 10
    assert counts(dsn) == (500, 500)
