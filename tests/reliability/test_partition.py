"""A database cut off by a network partition (no FIN, no RST), through the tests' FaultProxy.

The sink runs as a child process (`sinkframe run`) whose database is reached
through the proxy; the test reads the database directly. What is checked:
- the endpoints keep answering, within a second, and say the database is gone;
- a sink started during the partition waits, then joins its group and catches up;
- a running sink resumes after the heal, every message exactly once;
- SIGTERM during the partition ends the process.

What the proxy cannot show: TCP keepalives and tcp_user_timeout never fire through
it, because the proxy's own kernel keeps acknowledging what it swallows. Those
are for a real partition (measured in docs/reliability.md); here, connections are
given up by the sink's own deadlines.
"""
from __future__ import annotations

import json
import signal
import subprocess
import threading
import time

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from sinkframe.devservices import free_port, produce

from sinktest.config import sink_env, write_connector
from sinktest.db import create_tables, query, row_counts
from sinktest.faultproxy import FaultProxy
from sinktest.monitor import http_get
from sinktest.sinks import start_sink_process
from sinktest.waiting import wait_for

pytestmark = pytest.mark.slow


def through(proxy: FaultProxy, dsn: str) -> str:
    params = conninfo_to_dict(dsn)
    params.update(host=proxy.host, port=str(proxy.port))
    return make_conninfo("", **params)


def proxy_for(dsn: str) -> FaultProxy:
    params = conninfo_to_dict(dsn)
    return FaultProxy(params.get("host") or "127.0.0.1", int(params.get("port") or 5432))


def messages(start: int, count: int):
    for i in range(start, start + count):
        yield {"device_id": f"dev-{i % 23}", "timestamp": 1_700_000_000 + i, "payload": {"i": i}}


def steady_producer(bootstrap: str, topic: str, start: int, count: int, per_second: int) -> threading.Thread:
    def run():
        chunk = max(per_second // 10, 1)
        for first in range(start, start + count, chunk):
            produce(bootstrap, topic, messages(first, min(chunk, start + count - first)))
            time.sleep(0.1)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def assert_each_message_once(dsn: str, total: int) -> None:
    assert row_counts(dsn) == (total, total)
    assert query(dsn, "SELECT count(DISTINCT (payload->>'i')::int), min((payload->>'i')::int), "
                      "max((payload->>'i')::int) FROM iot_raw_data") == [(total, 0, total - 1)]


def timed_get(url: str) -> tuple[float, int, str]:
    """(seconds, status, body); an endpoint that does not answer within 5 s counts as taking forever."""
    started = time.monotonic()
    try:
        status, body = http_get(url, timeout=5)
    except TimeoutError:
        return float("inf"), 0, ""
    return time.monotonic() - started, status, body


def stop(sink, timeout: float = 30) -> int | None:
    """SIGTERM, then the exit code (None: it did not exit in time, and was killed)."""
    if sink.poll() is None:
        sink.send_signal(signal.SIGTERM)
    try:
        return sink.wait(timeout)
    except subprocess.TimeoutExpired:
        sink.kill()
        sink.wait(10)
        return None


def test_the_endpoints_answer_within_a_second_during_a_partition(pg_dsn, kafka_bootstrap, new_topic, tmp_path):
    create_tables(pg_dsn)
    topic = new_topic()
    produce(kafka_bootstrap, topic, messages(0, 300))
    port = free_port()
    with proxy_for(pg_dsn) as proxy:
        connector = write_connector(tmp_path, name="endpoints", topic=topic, max_rows=100, max_wait_ms=100)
        sink = start_sink_process([connector], sink_env(kafka_bootstrap, through(proxy, pg_dsn)),
                                  tmp_path / "sink.log", "--metrics-port", str(port))
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for(lambda: row_counts(pg_dsn)[0] == 300, timeout=60, message="the first rows")
            wait_for(lambda: http_get(url + "/readyz")[0] == 200, timeout=20, message="ready")
            proxy.blackhole()
            slowest, not_ready = 0.0, None
            until = time.monotonic() + 12
            while time.monotonic() < until:
                for path in ("/metrics", "/readyz", "/healthz"):
                    seconds, status, body = timed_get(url + path)
                    slowest = max(slowest, seconds)
                    if path == "/readyz" and status == 503:
                        not_ready = json.loads(body)
                    if path == "/metrics":
                        assert status == 200 or seconds == float("inf")
                time.sleep(0.3)
            assert slowest < 1.0, f"an endpoint took {slowest:.2f}s during the partition"
            assert not_ready is not None, "/readyz stayed ready with the database cut off"
            assert any("database unreachable" in r for r in not_ready["reasons"]), not_ready
            assert not_ready["database"]["probe_age_seconds"] is not None
            _, _, metrics = timed_get(url + "/metrics")
            assert "sinkframe_database_up 0.0" in metrics
            assert "sinkframe_database_probe_age_seconds" in metrics
            proxy.heal()
            # The probe reconnects by itself.
            wait_for(lambda: http_get(url + "/readyz")[0] == 200, timeout=40, message="ready again after the heal")
        finally:
            stop(sink)


def test_a_sink_started_during_a_partition_waits_then_joins_and_catches_up(
        pg_dsn, kafka_bootstrap, new_topic, tmp_path):
    create_tables(pg_dsn)
    topic = new_topic(partitions=4)
    backlog, streamed, late = 2_000, 3_000, 1_000
    total = backlog + streamed
    produce(kafka_bootstrap, topic, messages(0, backlog), key=lambda m: m["device_id"].encode())
    connector = write_connector(tmp_path, name="joiner", topic=topic, max_rows=300, max_wait_ms=100)
    port = free_port()
    with proxy_for(pg_dsn) as proxy:
        first = start_sink_process([connector], sink_env(kafka_bootstrap, pg_dsn), tmp_path / "first.log")
        second = None
        try:
            wait_for(lambda: row_counts(pg_dsn)[0] >= 500, timeout=60, message="the first sink's rows")
            producer = steady_producer(kafka_bootstrap, topic, backlog, streamed, per_second=150)
            proxy.blackhole()
            log = tmp_path / "second.log"
            second = start_sink_process([connector], sink_env(kafka_bootstrap, through(proxy, pg_dsn)), log,
                                        "--metrics-port", str(port))
            url = f"http://127.0.0.1:{port}"
            # It does not give up: it waits for the database, and says so.
            wait_for(lambda: "waiting for the database" in log.read_text(), timeout=30,
                     message="a logged connection attempt")
            status, body = wait_for(lambda: (lambda r: r if r[0] == 503 else None)(http_get(url + "/readyz")),
                                    timeout=10, message="/readyz answering")
            assert "starting: waiting for the database" in " ".join(json.loads(body)["reasons"])
            assert http_get(url + "/healthz")[0] == 200
            time.sleep(8)
            assert second.poll() is None, log.read_text()[-2000:]
            proxy.heal()
            wait_for(lambda: f"assigned {topic}" in log.read_text(), timeout=60,
                     message="the second sink to join the group and get partitions")
            producer.join(60)
            # Messages for every partition, now that the two share them.
            produce(kafka_bootstrap, topic, messages(total, late), key=lambda m: m["device_id"].encode())
            total += late
            wait_for(lambda: row_counts(pg_dsn)[0] >= total, timeout=60, message=f"all {total} rows")
            time.sleep(1.0)  # a duplicate would land within a batch interval
            written_by_second = int(sum(float(line.split()[-1]) for line in http_get(url + "/metrics")[1].splitlines()
                                        if line.startswith("sinkframe_messages_total")))
        finally:
            codes = [stop(sink) for sink in (first, second) if sink is not None]
    assert codes == [0, 0]
    assert_each_message_once(pg_dsn, total)
    assert written_by_second > 0, "the second sink never wrote: it did not take part in the group"


def write_in_flight(admin_dsn: str, proxy: FaultProxy, kafka_bootstrap: str, topic: str, start: int, count: int):
    """Cut the sink off while one of its writes is in flight: the write waits on a lock another
    session holds, the partition starts, then the lock goes; the server finishes the statement,
    and its answer is swallowed. The sink's connection is then dead in the middle of a write."""
    import psycopg

    with psycopg.connect(admin_dsn) as locker:
        locker.execute("LOCK TABLE iot_raw_data IN ACCESS EXCLUSIVE MODE")
        produce(kafka_bootstrap, topic, messages(start, count))
        wait_for(lambda: query(admin_dsn, "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                                          "'sinkframe' AND wait_event_type = 'Lock'")[0][0] > 0,
                 timeout=30, message="a write waiting for the lock")
        proxy.blackhole()
        locker.rollback()


def run_through_partition(pg_dsn, kafka_bootstrap, topic, tmp_path, *, mid_write: bool) -> None:
    create_tables(pg_dsn)
    total, before = 6_000, 1_000
    connector = write_connector(tmp_path, name="partitioned", topic=topic, max_rows=300, max_wait_ms=100)
    with proxy_for(pg_dsn) as proxy:
        log = tmp_path / "sink.log"
        sink = start_sink_process([connector], sink_env(kafka_bootstrap, through(proxy, pg_dsn)), log)
        try:
            produce(kafka_bootstrap, topic, messages(0, before))
            wait_for(lambda: row_counts(pg_dsn)[0] == before, timeout=60, message="rows before the partition")
            if mid_write:
                write_in_flight(pg_dsn, proxy, kafka_bootstrap, topic, before, 300)
                before += 300
            else:  # between writes: the sink's connections are idle in its pool
                proxy.blackhole()
            producer = steady_producer(kafka_bootstrap, topic, before, total - before, per_second=200)
            time.sleep(25)
            cut_off_at = row_counts(pg_dsn)[0]
            proxy.heal()
            healed = time.monotonic()
            producer.join(60)
            wait_for(lambda: row_counts(pg_dsn)[0] >= total, timeout=50,
                     message=f"all {total} rows after the heal (had {cut_off_at} when it healed)")
            caught_up_after = time.monotonic() - healed
            time.sleep(1.0)  # a duplicate would land within a batch interval
        finally:
            code = stop(sink)
    assert code == 0, log.read_text()[-3000:]
    assert_each_message_once(pg_dsn, total)
    print(f"caught up {caught_up_after:.1f}s after the heal")


def test_a_sink_cut_off_between_writes_resumes_after_the_heal_exactly_once(
        pg_dsn, kafka_bootstrap, new_topic, tmp_path):
    run_through_partition(pg_dsn, kafka_bootstrap, new_topic(partitions=2), tmp_path, mid_write=False)


# The two below rest on the bound on one batch's write (pipeline/write/writestage.py): through this
# proxy, which keeps acknowledging, no keepalive or tcp_user_timeout can fire, so only the
# write bound ends a write whose connection the partition cut off.
def test_a_sink_cut_off_in_the_middle_of_a_write_resumes_after_the_heal_exactly_once(
        pg_dsn, kafka_bootstrap, new_topic, tmp_path):
    run_through_partition(pg_dsn, kafka_bootstrap, new_topic(partitions=2), tmp_path, mid_write=True)


def test_sigterm_during_a_partition_ends_the_sink(pg_dsn, kafka_bootstrap, new_topic, tmp_path):
    create_tables(pg_dsn)
    topic = new_topic()
    connector = write_connector(tmp_path, name="sigterm", topic=topic, max_rows=200, max_wait_ms=100)
    with proxy_for(pg_dsn) as proxy:
        log = tmp_path / "sink.log"
        sink = start_sink_process([connector], sink_env(kafka_bootstrap, through(proxy, pg_dsn)), log)
        try:
            produce(kafka_bootstrap, topic, messages(0, 500))
            wait_for(lambda: row_counts(pg_dsn)[0] == 500, timeout=60, message="the first rows")
            write_in_flight(pg_dsn, proxy, kafka_bootstrap, topic, 500, 200)
            produce(kafka_bootstrap, topic, messages(700, 2_000))
            time.sleep(3)
            sink.send_signal(signal.SIGTERM)
            stopped = time.monotonic()
            code = stop(sink, timeout=45)
            took = time.monotonic() - stopped
        finally:
            if sink.poll() is None:
                sink.kill()
    assert code == 0, f"exit {code} after {took:.0f}s:\n{log.read_text()[-3000:]}"
    rows, distinct = row_counts(pg_dsn)
    assert rows == distinct  # nothing twice; the rest is read again on the next start
