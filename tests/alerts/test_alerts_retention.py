"""SINKFRAME_ALERTS_RETENTION: old transitions and resolved states go, on PostgreSQL and on TimescaleDB.

Plain PostgreSQL: a batch's write (AlertRecorder, in the batch's transaction)
deletes transitions and `ok` states older than the retention, and keeps the
rest (a firing state however old, anything recent). TimescaleDB (the real
server of /work/shared/timescaledb, in a database of this module's own):
`sinkframe_alerts` becomes a hypertable on `created_at`, its rows kept, with a
retention policy whose job really drops the old ones; the policy follows the
setting, and `off` removes it.
"""
from __future__ import annotations

import json
import os
import uuid

import psycopg
import pytest
from confluent_kafka import Message
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg_pool import ConnectionPool

from sinkframe.alerts import parse_rules, store
from sinkframe.alerts.recorder import AlertRecorder
from sinkframe.config.settings import Settings
from sinkframe.errors import ConfigError
from sinkframe.mapping.registry import PluginRegistry
from sinkframe.pipeline.batch import BatchBuilder
from sinkframe.pipeline.consume.positions import PartitionPositions
from sinkframe.pipeline.write.writer import BatchWriter, ResolvedTarget

from sinktest.db import create_tables, query

TOPIC, GROUP = "readings.retention", "sinkframe-retention"
# The shared TimescaleDB server (/work/shared/timescaledb/start prints this DSN); SINKFRAME_TEST_TSDB_DSN elsewhere.
TIMESCALE_SERVER = os.environ.get("SINKFRAME_TEST_TSDB_DSN", "host=127.0.0.1 port=5442 user=postgres dbname=postgres")


def seed(dsn: str) -> None:
    """Transitions and states, some 40 days old; the alert tables as an older sink made them."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        store.create_alert_tables(conn)
        for key, age in (("old-1", "40 days"), ("old-2", "40 days"), ("new-1", "1 day")):
            conn.execute("INSERT INTO sinkframe_alerts (connector, alert, alert_key, state, severity, source_topic, "
                         "source_partition, source_offset, created_at) VALUES ('c', 'hot', %s, 'firing', 'warning', "
                         "'t', 0, 0, now() - %s::interval)", [key, age])
        for key, state, age in (("resolved-long-ago", "ok", "40 days"), ("firing-long-ago", "firing", "40 days"),
                                ("resolved-lately", "ok", "1 day"), ("tenant-resolved", "ok", "40 days")):
            connector = "c/acme" if key.startswith("tenant") else "c"
            conn.execute("INSERT INTO sinkframe_alert_states (connector, alert, alert_key, state, updated_at) "
                         "VALUES (%s, 'hot', %s, %s, now() - %s::interval)", [connector, key, state, age])


def recorder_writer(pool, retention: str | None) -> BatchWriter:
    mapper = PluginRegistry().get("smart_breaker")({})
    targets = {role: ResolvedTarget(role, t.default_table, t) for role, t in mapper.targets.items()}
    rules, problems = parse_rules([{"name": "hot", "when": "temperature > 70"}], mapper.targets,
                                  where=lambda path: str(path))
    assert not problems
    writer = BatchWriter(pool, connector="c", group_id=GROUP, topic=TOPIC, targets=targets,
                         parts=[AlertRecorder("c", rules, targets, retention=retention)])
    writer.ensure_framework_tables()
    return writer


def write_one_reading(writer: BatchWriter) -> None:
    builder = BatchBuilder(TOPIC, PluginRegistry().get("smart_breaker")({}),
                           positions=PartitionPositions("c", TOPIC))
    reading = {"device_id": "dev-1", "timestamp": 1_700_000_000, "measurements": {"temperature": 20.0}}
    builder.add([Message(topic=TOPIC, partition=0, offset=0, key=b"dev-1", value=json.dumps(reading).encode(),
                         timestamp=(1, 1_700_000_000_000))])
    writer.write(builder.take(), {0: None})


def states(dsn: str) -> set[str]:
    return {key for (key,) in query(dsn, "SELECT alert_key FROM sinkframe_alert_states")}


def transitions(dsn: str) -> set[str]:
    return {key for (key,) in query(dsn, "SELECT alert_key FROM sinkframe_alerts")}


def test_a_write_prunes_old_transitions_and_resolved_states_on_plain_postgres(pg_dsn):
    create_tables(pg_dsn)
    seed(pg_dsn)
    with ConnectionPool(pg_dsn, min_size=1, max_size=2, open=True) as pool:
        write_one_reading(recorder_writer(pool, "30 days"))
    assert transitions(pg_dsn) == {"new-1"}
    assert states(pg_dsn) == {"firing-long-ago", "resolved-lately"}  # a firing state stays however old


def test_the_setting_reads_an_interval_or_off_and_names_itself_when_wrong():
    assert Settings.from_env({}).alerts_retention == "90 days"
    assert Settings.from_env({"SINKFRAME_ALERTS_RETENTION": " 12  hours"}).alerts_retention == "12 hours"
    assert Settings.from_env({"SINKFRAME_ALERTS_RETENTION": "off"}).alerts_retention is None
    for wrong in ("soon", "0 days", ""):
        with pytest.raises(ConfigError, match="SINKFRAME_ALERTS_RETENTION"):
            Settings.from_env({"SINKFRAME_ALERTS_RETENTION": wrong})


def test_without_retention_nothing_is_pruned(pg_dsn):
    create_tables(pg_dsn)
    seed(pg_dsn)
    with ConnectionPool(pg_dsn, min_size=1, max_size=2, open=True) as pool:
        write_one_reading(recorder_writer(pool, None))
    assert transitions(pg_dsn) == {"old-1", "old-2", "new-1"}
    assert len(states(pg_dsn)) == 4


@pytest.fixture
def timescale_db():
    """A database of this test's own on the shared TimescaleDB server (dropped afterwards, no other)."""
    try:
        admin = psycopg.connect(TIMESCALE_SERVER, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as err:
        pytest.skip(f"no TimescaleDB server at {TIMESCALE_SERVER} (/work/shared/timescaledb/start): {err}")
    name = f"sinkframe_alerts_{uuid.uuid4().hex[:10]}"
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        dsn = make_conninfo(TIMESCALE_SERVER, dbname=name)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        try:
            yield dsn
        finally:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def policy(dsn: str) -> list[tuple]:
    return query(dsn, "SELECT job_id, config->>'drop_after' FROM timescaledb_information.jobs "
                      "WHERE proc_name = 'policy_retention' AND hypertable_name = 'sinkframe_alerts'")


def test_on_timescaledb_the_alerts_table_becomes_a_hypertable_whose_policy_drops_old_transitions(timescale_db):
    dsn = timescale_db
    create_tables(dsn)
    seed(dsn)  # an existing plain table, as a sink before the setting left it
    with ConnectionPool(dsn, min_size=1, max_size=2, open=True) as pool:
        write_one_reading(recorder_writer(pool, "30 days"))
        assert query(dsn, "SELECT count(*) FROM timescaledb_information.hypertables "
                          "WHERE hypertable_name = 'sinkframe_alerts'") == [(1,)]
        assert transitions(dsn) == {"old-1", "old-2", "new-1"}  # migrated; the policy's job drops them
        assert states(dsn) == {"firing-long-ago", "resolved-lately"}  # states: pruned by the write
        [(job, drop_after)] = policy(dsn)
        assert drop_after == "30 days"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CALL run_job(%s)", [job])
        assert transitions(dsn) == {"new-1"}

        recorder_writer(pool, "7 days")  # a restart with another retention replaces the policy
        assert [d for _, d in policy(dsn)] == ["7 days"]
        recorder_writer(pool, None)  # off: no policy, the table stays a hypertable
        assert policy(dsn) == []
