"""Routing end to end: messages to their tenant's schema, exactly once through a kill -9.

Two tenants are provisioned with `sinkframe tenants add` on the real PostgreSQL;
a raw connector with `tenant: {key_prefix: ":"}` routes keys `acme_x:dev-1` to
tenant_acme_x.iot_raw_data; a key naming an unregistered tenant is a dead letter at
stage `route`. A batch spans tenants, and still commits once.
"""
from __future__ import annotations

import signal

import pytest
from psycopg import sql

from sinkframe.devservices import produce

from sinktest.config import FAST_GROUP_JOIN, sink_env, write_connector
from sinktest.db import query
from sinktest.paths import REPO
from sinktest.sinks import run_process_until, start_sink_process
from sinktest.waiting import wait_for
from tenanthelp import run

pytestmark = pytest.mark.slow


def tenant_rows(dsn: str, tenant: str) -> tuple[int, int]:
    table = sql.Identifier(f"tenant_{tenant}", "iot_raw_data")
    return query(dsn, sql.SQL("SELECT count(*), count(DISTINCT source_offset::text || '/' || source_partition) "
                              "FROM {}").format(table))[0]


def test_messages_reach_their_tenant_exactly_once_through_kill9_and_unknown_tenants_are_dead_letters(
        kafka_bootstrap, pg_dsn, new_topic, tmp_path, tenant_names):
    acme, globex = tenant_names("acme", "globex")
    env = sink_env(kafka_bootstrap, pg_dsn, schema_dir=REPO / "schema", group_join=FAST_GROUP_JOIN)
    for name, retention in ((acme, "7 days"), (globex, "90 days")):
        result = run("tenants", "add", name, "--retention", retention, "--database-url", pg_dsn, env=env)
        assert result.exit_code == 0, result.output
    topic = new_topic(partitions=3)
    tenants = [acme, globex, "nobody"]
    total = 9_000
    messages = [{"device_id": f"dev-{i % 30}", "timestamp": 1_700_000_000 + i, "payload": {"i": i},
                 "tenant": tenants[i % 3]} for i in range(total)]
    produce(kafka_bootstrap, topic, messages, key=lambda m: f"{m['tenant']}:{m['device_id']}".encode())
    connector = write_connector(tmp_path, name="routed", topic=topic, max_rows=500, max_wait_ms=50,
                                extra='tenant: {key_prefix: ":"}\n')
    log = tmp_path / "sink.log"

    sink = start_sink_process([connector], env, log)
    wait_for(lambda: tenant_rows(pg_dsn, acme)[0] > 0, timeout=60, message="the first routed rows")
    sink.send_signal(signal.SIGKILL)
    sink.wait(10)
    assert tenant_rows(pg_dsn, acme)[0] < total // 3, "the kill came after everything was written"

    run_process_until([connector], env, log,
                      lambda: query(pg_dsn, "SELECT coalesce(sum(next_offset), 0) FROM sinkframe_offsets")[0][0]
                      >= total, timeout=90, message="every message committed")
    assert tenant_rows(pg_dsn, acme) == (total // 3, total // 3)
    assert tenant_rows(pg_dsn, globex) == (total // 3, total // 3)
    assert query(pg_dsn, "SELECT count(*) FROM iot_raw_data") == [(0,)]  # nothing fell through to public
    assert {r[0] for r in query(pg_dsn, sql.SQL("SELECT DISTINCT payload->>'i' FROM {}").format(
        sql.Identifier(f"tenant_{acme}", "iot_raw_data")))} == {str(i) for i in range(0, total, 3)}
    dead = query(pg_dsn, "SELECT stage, error_class, count(*), min(error_message) FROM sinkframe_dead_letters "
                         "GROUP BY 1, 2")
    assert [(stage, cls, n) for stage, cls, n, _ in dead] == [("route", "UnknownTenant", total // 3)]
    assert "'nobody'" in dead[0][3]
    for name in (acme, globex):
        assert run("tenants", "remove", name, "--drop-data", "--yes", "--database-url", pg_dsn,
                   env=env).exit_code == 0
