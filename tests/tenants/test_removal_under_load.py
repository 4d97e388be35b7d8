"""`tenants remove` while messages of three tenants flow: the connector runs on, each message lands once.

Three tenants are provisioned on the real PostgreSQL and a routed connector
(`tenant: {key_prefix: ":"}`) runs in-process while a producer keeps sending to
all three. Half way, one tenant is removed, with or without `--drop-data`.
From the moment the removal commits, that tenant's messages are dead letters at
stage `route` (its table gets no row more); the other two tenants' messages all
land, exactly once; the connector never stops.
"""
from __future__ import annotations

import threading
import time

import pytest
from psycopg import sql

from sinkframe.devservices import produce
from sinkframe.pipeline.stats import ConnectorState

from sinktest.config import FAST_GROUP_JOIN, sink_env, write_connector
from sinktest.db import query
from sinktest.paths import REPO
from sinktest.sinks import InProcessSink
from sinktest.waiting import wait_for
from tenanthelp import run

pytestmark = pytest.mark.slow

CHUNKS, CHUNK = 40, 450  # 18,000 messages over about 12 s


class Producer(threading.Thread):
    """Sends message i of tenant tenants[i % 3] in chunks; `sent` is how many are acknowledged so far."""

    def __init__(self, bootstrap: str, topic: str, tenants: list[str]):
        super().__init__(daemon=True)
        self.bootstrap, self.topic, self.tenants = bootstrap, topic, tenants
        self.sent = 0

    def send_chunk(self, first: int) -> None:
        messages = [{"device_id": f"dev-{i % 20}", "timestamp": 1_700_000_000 + i, "payload": {"i": i},
                     "tenant": self.tenants[i % 3]} for i in range(first, first + CHUNK)]
        produce(self.bootstrap, self.topic, messages, key=lambda m: f"{m['tenant']}:{m['device_id']}".encode())
        self.sent = first + CHUNK

    def run(self) -> None:  # the first chunk is sent before the thread starts
        for first in range(CHUNK, CHUNKS * CHUNK, CHUNK):
            self.send_chunk(first)
            time.sleep(0.3)


def landed(dsn: str, tenant: str) -> list[int]:
    """The message numbers in the tenant's table, one per row (duplicates kept)."""
    table = sql.Identifier(f"tenant_{tenant}", "iot_raw_data")
    return [int(i) for (i,) in query(dsn, sql.SQL("SELECT payload->>'i' FROM {}").format(table))]


def routed_out(dsn: str) -> list[tuple[str, int]]:
    """(tenant named in the key, message number) of each route dead letter."""
    rows = query(dsn, "SELECT convert_from(key, 'UTF8'), convert_from(value, 'UTF8')::jsonb->'payload'->>'i', "
                      "error_class FROM sinkframe_dead_letters WHERE stage = 'route'")
    assert {cls for _, _, cls in rows} <= {"UnknownTenant"}
    return [(key.partition(":")[0], int(i)) for key, i, _ in rows]


def schema_exists(dsn: str, schema: str) -> bool:
    return query(dsn, "SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = %s)", [schema])[0][0]


@pytest.mark.parametrize("drop_data", [False, True], ids=["keep-data", "drop-data"])
def test_a_tenant_removed_under_load_is_dead_lettered_from_the_commit_and_the_connector_runs_on(
        kafka_bootstrap, pg_dsn, new_topic, tmp_path, tenant_names, drop_data):
    acme, globex, initech = tenants = tenant_names("acme", "globex", "initech")
    env = sink_env(kafka_bootstrap, pg_dsn, schema_dir=REPO / "schema", group_join=FAST_GROUP_JOIN)
    for name in tenants:
        added = run("tenants", "add", name, "--database-url", pg_dsn, env=env)
        assert added.exit_code == 0, added.output
    topic = new_topic(partitions=3)
    connector = write_connector(tmp_path, name="routed", topic=topic, max_rows=500, max_wait_ms=50,
                                extra='tenant: {key_prefix: ":"}\n')
    total = CHUNKS * CHUNK
    producer = Producer(kafka_bootstrap, topic, tenants)

    with InProcessSink([connector], env) as sink:
        task = sink.tasks[0]
        producer.send_chunk(0)
        wait_for(lambda: len(landed(pg_dsn, initech)) > 0, timeout=90, message="the removed tenant's first rows")
        producer.start()
        wait_for(lambda: producer.sent >= total // 3, timeout=90, message="a third of the traffic sent")
        args = ["tenants", "remove", initech, "--yes", "--database-url", pg_dsn] + (["--drop-data"] if drop_data
                                                                                     else [])
        removed = run(*args, env=env)
        assert removed.exit_code == 0, removed.output
        sent_at_removal = producer.sent  # every message from here on was produced after the commit
        kept_at_removal = [] if drop_data else landed(pg_dsn, initech)
        assert sent_at_removal < total, "the producer finished before the removal: nothing was under load"
        producer.join(120)
        wait_for(lambda: task.failure is not None or task.stats.messages >= total, timeout=120,
                 message="every message written")
        assert task.failure is None, f"the connector stopped: {task.failure}"
        assert task.stats.state == ConnectorState.RUNNING

    assert query(pg_dsn, "SELECT sum(next_offset) FROM sinkframe_offsets")[0][0] == total
    for name, residue in ((acme, 0), (globex, 1)):
        assert sorted(landed(pg_dsn, name)) == list(range(residue, total, 3)), f"tenant {name}"
    assert query(pg_dsn, "SELECT count(*) FROM iot_raw_data") == [(0,)]  # nothing fell through to public
    letters = routed_out(pg_dsn)
    assert {tenant for tenant, _ in letters} == {initech}
    dead = [i for _, i in letters]
    assert len(dead) == len(set(dead)), "a message was dead-lettered twice"
    produced_after = set(range(sent_at_removal, total)) & set(range(2, total, 3))
    assert produced_after <= set(dead), "a message produced after the removal committed was not dead-lettered"
    if drop_data:
        assert not schema_exists(pg_dsn, f"tenant_{initech}")
        assert set(dead) < set(range(2, total, 3))  # the ones before the removal went with the schema
    else:
        kept = landed(pg_dsn, initech)
        assert sorted(kept) == sorted(kept_at_removal), "rows reached the removed tenant after its removal"
        assert len(kept) == len(set(kept)) and not set(kept) & set(dead)
        assert set(kept) | set(dead) == set(range(2, total, 3))  # each message in exactly one place
