"""What only a real TimescaleDB server makes possible (the embedded engine has no COPY, one
connection and no background workers): several connectors COPYing into one hypertable at once,
across chunk boundaries and into compressed chunks; policies run by the server's own scheduler
(a tenant's: tests/tenants/test_tenants_timescale.py).

Each test has a database of its own (jobs are per database: other tests' jobs are not seen).
"""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
from psycopg import sql

from sinkframe.devservices import produce
from sinkframe.schema import apply_schema, load_schema

from sinktest.config import FAST_GROUP_JOIN, sink_env, write_connector
from sinktest.paths import REPO
from sinktest.sinks import run_until_idle
from sinktest.tsdb import insert_raw, job_id, run_by_scheduler

pytestmark = [pytest.mark.timescale, pytest.mark.slow]

SPEC = load_schema(REPO / "schema", env={})
NOW = time.time()
DAY = 86_400
# Every statement that writes iot_raw_data leaves its first word and its backend here.
WRITE_LOG = """
CREATE TABLE write_log (verb text, pid integer);
CREATE FUNCTION log_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO write_log VALUES (upper(split_part(ltrim(current_query()), ' ', 1)), pg_backend_pid());
RETURN NULL; END $$;
CREATE TRIGGER log_write AFTER INSERT ON iot_raw_data FOR EACH STATEMENT EXECUTE FUNCTION log_write();
"""


def raw_messages(source: str, count: int, *, first: float, span: float):
    step = span / count
    for i in range(count):
        yield {"device_id": f"{source}-{i % 20}", "timestamp": first + i * step, "payload": {"i": i}}


def test_connectors_copy_at_once_across_chunks_and_into_compressed_chunks(kafka_bootstrap, real_timescale,
                                                                         new_topic, tmp_path):
    with real_timescale.connect() as conn:
        apply_schema(conn, SPEC, tables={"iot_raw_data"})
        conn.execute(WRITE_LOG)
    topics = [new_topic(partitions=2) for _ in range(3)]
    connectors = [write_connector(tmp_path, name=f"copy-{n}", topic=topic, max_rows=500)
                  for n, topic in enumerate(topics)]
    env = sink_env(kafka_bootstrap, real_timescale.dsn, schema_dir=REPO / "schema", group_join=FAST_GROUP_JOIN,
                   SINKFRAME_PLAIN_POSTGRES="0")  # and nothing else: COPY, the default pool, prepared statements
    for n, topic in enumerate(topics):  # four days back: each day is a chunk of its own
        produce(kafka_bootstrap, topic, raw_messages(f"c{n}", 2_000, first=NOW - 4 * DAY, span=3 * DAY),
                key=lambda m: m["device_id"].encode())
    run_until_idle(connectors, env)

    with real_timescale.connect() as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT (source_topic, source_partition, source_offset)) "
                            "FROM iot_raw_data").fetchone() == (6_000, 6_000)
        chunks = conn.execute("SELECT compress_chunk(c, if_not_compressed => true) "
                              "FROM show_chunks('iot_raw_data') c").fetchall()
        assert len(chunks) >= 3
        writes = conn.execute("SELECT verb, count(DISTINCT pid) FROM write_log GROUP BY verb").fetchall()
    assert dict(writes).keys() == {"COPY"} and dict(writes)["COPY"] >= 2, writes  # several connections

    for n, topic in enumerate(topics):  # late rows: into the compressed chunks
        produce(kafka_bootstrap, topic, raw_messages(f"c{n}", 300, first=NOW - 4 * DAY + 60, span=3 * DAY),
                key=lambda m: m["device_id"].encode())
    run_until_idle(connectors, env)
    with real_timescale.connect() as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT (source_topic, source_partition, source_offset)) "
                            "FROM iot_raw_data").fetchone() == (6_900, 6_900)
        assert conn.execute("SELECT sum(next_offset) FROM sinkframe_offsets").fetchone() == (6_900,)
        compressed = conn.execute("SELECT count(*) FROM timescaledb_information.chunks "
                                  "WHERE hypertable_name = 'iot_raw_data' AND is_compressed").fetchone()[0]
        assert compressed == len(chunks)  # the late rows went in without decompressing a chunk for good
        assert {v for (v,) in conn.execute("SELECT DISTINCT verb FROM write_log")} == {"COPY"}


def test_compression_retention_and_refresh_policies_run_by_themselves(real_timescale):
    now = datetime.now(timezone.utc)
    with real_timescale.connect() as conn:
        apply_schema(conn, SPEC)
        # 2 days old: compressed, and materialized (its hour ended more than 1 hour ago); 10 minutes
        # old: neither, whatever the time of day.
        insert_raw(conn, sql.Identifier("iot_raw_data"), [(now - timedelta(days=2), "old"),
                                                          (now - timedelta(minutes=10), "recent")])
        insert_raw(conn, sql.Identifier("iot_enriched_data"), [(now - timedelta(days=40), "expired"),
                                                               (now - timedelta(days=1), "kept")])
        jobs = {"compression": job_id(conn, "iot_raw_data", "policy_compression"),
                "retention": job_id(conn, "iot_enriched_data", "policy_retention"),
                "refresh": job_id(conn, "iot_raw_hourly_counts", "policy_refresh_continuous_aggregate")}
        # One after the other, as their schedules space them in production.
        for job in jobs.values():
            run_by_scheduler(conn, job)

    with real_timescale.connect() as conn:
        compressed = conn.execute("SELECT range_end < now() - interval '1 hour', is_compressed "
                                  "FROM timescaledb_information.chunks WHERE hypertable_name = 'iot_raw_data'"
                                  ).fetchall()
        kept = [d for (d,) in conn.execute("SELECT device_id FROM iot_enriched_data")]
        schema, table = conn.execute(
            "SELECT materialization_hypertable_schema, materialization_hypertable_name "
            "FROM timescaledb_information.continuous_aggregates WHERE view_name = 'iot_raw_hourly_counts'").fetchone()
        materialized = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table))
                                    ).fetchone()[0]
        failures = conn.execute("SELECT coalesce(sum(total_failures), 0) FROM timescaledb_information.job_stats "
                                "WHERE job_id = ANY(%s)", [list(jobs.values())]).fetchone()[0]
        errors = conn.execute("SELECT job_id, err_message FROM timescaledb_information.job_errors "
                              "WHERE job_id = ANY(%s)", [list(jobs.values())]).fetchall()
    assert sorted(compressed) == [(False, False), (True, True)]  # the old chunk compressed, today's not
    assert kept == ["kept"]  # the 40-day-old chunk dropped by the retention policy
    assert materialized == 1  # the old row's hour, by the refresh policy (3 days back, to 1 hour ago)
    assert failures == 0, errors

