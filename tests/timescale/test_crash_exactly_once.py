"""kill -9 of the sink, then an immediate stop of the TimescaleDB server, mid-stream, while the
rows go into compressed chunks: every message lands exactly once.

The server is one of the test's own (sinktest.tsdb.PrivateTimescale: the shared server's
binaries, another port and data folder), since the shared one must never be stopped.
"""
from __future__ import annotations

import signal
import time

import psycopg
import pytest

from sinkframe.devservices import produce
from sinkframe.schema import apply_schema, load_schema

from sinktest.config import FAST_GROUP_JOIN, sink_env, write_connector
from sinktest.db import query, row_counts
from sinktest.paths import REPO
from sinktest.sinks import run_process_until, start_sink_process
from sinktest.tsdb import PrivateTimescale
from sinktest.waiting import wait_for

pytestmark = [pytest.mark.timescale, pytest.mark.slow]

DAY = 86_400
# Each write statement takes a little longer, so that the kills land in the middle of the stream.
SLOW_WRITE = """
CREATE FUNCTION slow_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_sleep(0.15); RETURN NULL; END $$;
CREATE TRIGGER slow_write BEFORE INSERT ON iot_raw_data FOR EACH STATEMENT EXECUTE FUNCTION slow_write();
"""


def messages(start: int, count: int, *, first: float, span: float):
    for i in range(start, start + count):
        yield {"device_id": f"dev-{i % 30}", "timestamp": first + (i - start) * span / count, "payload": {"i": i}}


@pytest.fixture
def private_timescale(timescale_server):
    if timescale_server is None:
        pytest.skip("needs a real TimescaleDB server's binaries")
    bindir = timescale_server.bindir()
    if bindir is None:
        pytest.skip("the TimescaleDB server's binaries are not on this machine (a remote or container server)")
    with PrivateTimescale(bindir) as server:
        yield server


def test_kill9_and_immediate_server_stop_with_compressed_chunks_exactly_once(kafka_bootstrap, private_timescale,
                                                                            new_topic, tmp_path):
    server = private_timescale
    dsn = server.dsn()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION timescaledb")
        apply_schema(conn, load_schema(REPO / "schema", env={}), tables={"iot_raw_data"})
    topic = new_topic(partitions=3)
    connector = write_connector(tmp_path, name="crash", topic=topic, max_rows=300, max_wait_ms=50)
    env = sink_env(kafka_bootstrap, dsn, schema_dir=REPO / "schema", group_join=FAST_GROUP_JOIN,
                   SINKFRAME_PLAIN_POSTGRES="0")
    log = tmp_path / "sink.log"
    now = time.time()
    produce(kafka_bootstrap, topic, messages(0, 3_000, first=now - 4 * DAY, span=3 * DAY),
            key=lambda m: m["device_id"].encode())
    run_process_until([connector], env, log, lambda: row_counts(dsn)[0] >= 3_000, timeout=90,
                      message="the first 3,000 rows")
    with psycopg.connect(dsn, autocommit=True) as conn:
        compressed = conn.execute("SELECT compress_chunk(c, if_not_compressed => true) FROM show_chunks('iot_raw_data') c").fetchall()
        conn.execute(SLOW_WRITE)
    assert len(compressed) >= 3

    total = 9_000  # late rows: all into the compressed chunks
    produce(kafka_bootstrap, topic, messages(3_000, 6_000, first=now - 4 * DAY + 30, span=3 * DAY),
            key=lambda m: m["device_id"].encode())
    sink = start_sink_process([connector], env, log)
    wait_for(lambda: row_counts(dsn)[0] >= 4_000, timeout=60, message="the sink to be writing")
    sink.send_signal(signal.SIGKILL)
    sink.wait(10)
    landed, distinct = row_counts(dsn)
    assert landed == distinct < total, "killed mid-stream, nothing twice"

    sink = start_sink_process([connector], env, log)
    try:
        wait_for(lambda: row_counts(dsn)[0] >= landed + 600, timeout=60, message="the restarted sink writing")
        server.stop("immediate")
        time.sleep(2)
        server.start()
        assert row_counts(dsn)[0] < total, "the server was stopped mid-stream"
        wait_for(lambda: row_counts(dsn)[0] >= total, timeout=120, message=f"all {total} rows after the restart")
        time.sleep(1.0)  # a duplicate would land within a batch interval
    finally:
        sink.send_signal(signal.SIGTERM)
        assert sink.wait(30) == 0, log.read_text()[-3000:]

    assert row_counts(dsn) == (total, total), log.read_text()[-3000:]
    assert query(dsn, "SELECT sum(next_offset) FROM sinkframe_offsets") == [(total,)]
    assert query(dsn, "SELECT count(DISTINCT payload->>'i') FROM iot_raw_data") == [(total,)]
    assert query(dsn, "SELECT count(*) FROM timescaledb_information.chunks "
                      "WHERE hypertable_name = 'iot_raw_data' AND is_compressed") == [(len(compressed),)]
