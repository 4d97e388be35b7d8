"""The tenant registry is read where database waits are allowed: an outage never fails a routed connector.

A routed connector on a PostgreSQL server of the test's own; the server is
stopped (`-m immediate`, as a crash) while messages keep coming, some of them
naming a tenant the connector has not seen yet (which is what made the consumer
thread re-read the registry). The connector waits, as a write does, for longer
than the connection pool's own wait; when the server is back every message
lands once: a registered tenant's rows in its table, the others as route dead
letters.
"""
from __future__ import annotations

import time

import pytest
from psycopg import sql

from sinkframe.devservices import produce

from sinktest.config import FAST_GROUP_JOIN, sink_env, write_connector
from sinktest.db import query
from sinktest.paths import REPO
from sinktest.pgserver import PrivatePostgres, skip_without_server_binaries
from sinktest.sinks import InProcessSink
from sinktest.waiting import wait_for
from tenanthelp import run

pytestmark = pytest.mark.slow

OUTAGE_SECONDS = 40  # longer than the pool's own wait for a connection (30 s), which failed the connector


@pytest.fixture
def private_pg():
    skip_without_server_binaries()
    with PrivatePostgres() as server:
        yield server


def messages(first: int, count: int, tenants: list[str]) -> list[dict]:
    return [{"device_id": f"dev-{i % 7}", "timestamp": 1_700_000_000 + i, "payload": {"i": i},
             "tenant": tenants[i % len(tenants)]} for i in range(first, first + count)]


def send(bootstrap: str, topic: str, batch: list[dict]) -> None:
    produce(bootstrap, topic, batch, key=lambda m: f"{m['tenant']}:{m['device_id']}".encode())


def test_a_registry_read_during_an_outage_waits_and_never_fails_the_connector(
        kafka_bootstrap, new_topic, tmp_path, private_pg):
    dsn = private_pg.dsn()
    env = sink_env(kafka_bootstrap, dsn, schema_dir=REPO / "schema", group_join=FAST_GROUP_JOIN)
    assert run("tenants", "add", "acme", "--database-url", dsn, env=env).exit_code == 0
    topic = new_topic(partitions=2)
    connector = write_connector(tmp_path, name="routed", topic=topic, max_rows=200, max_wait_ms=50,
                                extra='tenant: {key_prefix: ":"}\n')
    acme_table = sql.Identifier("tenant_acme", "iot_raw_data")

    with InProcessSink([connector], env) as sink:
        task = sink.tasks[0]
        send(kafka_bootstrap, topic, messages(0, 300, ["acme"]))
        wait_for(lambda: task.stats.messages >= 300, timeout=60, message="the first 300 messages written")

        private_pg.stop("immediate")
        time.sleep(6)  # past the router's old re-read interval for a tenant it does not know
        send(kafka_bootstrap, topic, messages(300, 300, ["acme", "nobody"]))
        down_until = time.monotonic() + OUTAGE_SECONDS
        while time.monotonic() < down_until:
            assert task.failure is None, f"the connector stopped during the outage: {task.failure}"
            time.sleep(0.5)
        private_pg.start()

        wait_for(lambda: task.failure is not None or task.stats.messages >= 600, timeout=120,
                 message="every message written after the outage")
        assert task.failure is None, f"the connector stopped: {task.failure}"

    rows = query(dsn, sql.SQL("SELECT count(*), count(DISTINCT payload->>'i') FROM {}").format(acme_table))
    assert rows == [(450, 450)]
    assert query(dsn, "SELECT stage, error_class, count(*), count(DISTINCT kafka_offset::text || '/' || partition) "
                      "FROM sinkframe_dead_letters GROUP BY 1, 2") == [("route", "UnknownTenant", 150, 150)]
    assert query(dsn, "SELECT sum(next_offset) FROM sinkframe_offsets") == [(600,)]
