"""The writer's registry check, on the real PostgreSQL: what a routed batch commits, and the lock `remove` waits on.

A routed batch locks the registry rows of its tenants (`FOR KEY SHARE`) as its
first statement; a tenant not registered at that moment has its records
dead-lettered at stage `route` in the same transaction (tolerance all), or
stops its partition at the first of them (tolerance none). `tenants remove`
deletes the registry row, so it waits for a write that holds the lock, and a
write after it sees the tenant gone.
"""
from __future__ import annotations

import json
import threading
import time

import psycopg
import pytest
from confluent_kafka import Message
from psycopg import sql
from psycopg_pool import ConnectionPool

from sinkframe.mapping.registry import PluginRegistry
from sinkframe.pipeline.batch import Batch, BatchBuilder
from sinkframe.pipeline.consume.positions import PartitionPositions
from sinkframe.pipeline.route import TenantRouter
from sinkframe.pipeline.write.offsets import load_offsets
from sinkframe.pipeline.write.registrycheck import REGISTERED_TENANTS
from sinkframe.pipeline.write.writer import BatchWriter, ResolvedTarget
from sinkframe.tenants import remove_tenant

from sinktest.db import dead_letters, query
from sinktest.paths import REPO
from tenanthelp import run

TOPIC, GROUP = "routed.writer", "sinkframe-routed-writer"
ENV = {"SINKFRAME_PLAIN_POSTGRES": "1", "SINKFRAME_SCHEMA_DIR": str(REPO / "schema")}


@pytest.fixture
def registered(pg_dsn, tenant_names):
    acme, globex = tenant_names("acme", "globex")
    for name in (acme, globex):
        added = run("tenants", "add", name, "--database-url", pg_dsn, env=ENV)
        assert added.exit_code == 0, added.output
    return acme, globex


def writer_for(pool) -> BatchWriter:
    mapper = PluginRegistry().get("raw")({})
    targets = {role: ResolvedTarget(role, t.default_table, t) for role, t in mapper.targets.items()}
    writer = BatchWriter(pool, connector="routed", group_id=GROUP, topic=TOPIC, targets=targets,
                         dead_letter_table="sinkframe_dead_letters", routed=True)
    writer.ensure_framework_tables()
    return writer


def routed_batch(tenants: list[str], *, tolerate: bool = True) -> Batch:
    builder = BatchBuilder(TOPIC, PluginRegistry().get("raw")({}), positions=PartitionPositions("routed", TOPIC),
                           router=TenantRouter(key_prefix=":"), tolerate=tolerate)
    builder.add([Message(topic=TOPIC, partition=0, offset=i, key=f"{tenant}:dev-{i}".encode(),
                         value=json.dumps({"device_id": f"dev-{i}", "payload": {"i": i}}).encode(),
                         timestamp=(1, 1_700_000_000_000 + i)) for i, tenant in enumerate(tenants)])
    return builder.take()


def offsets_in(dsn: str, tenant: str) -> list[int]:
    return [o for (o,) in query(dsn, sql.SQL("SELECT source_offset FROM {} ORDER BY 1").format(
        sql.Identifier(f"tenant_{tenant}", "iot_raw_data")))]


def test_records_of_an_unregistered_tenant_are_route_dead_letters_in_the_batch_transaction(pg_dsn, registered):
    acme, globex = registered
    with ConnectionPool(pg_dsn, min_size=1, max_size=2, open=True) as pool:
        writer = writer_for(pool)
        outcome = writer.write(routed_batch([acme, "nobody", globex, acme, "nobody"]), {0: None})
        assert [(d.offset, d.stage, d.error_class) for d in outcome.rejected] == [
            (1, "route", "UnknownTenant"), (4, "route", "UnknownTenant")]
        assert outcome.next_offsets == {0: 5}
        with pool.connection() as conn:
            assert load_offsets(conn, GROUP, TOPIC) == {0: 5}
    assert offsets_in(pg_dsn, acme) == [0, 3] and offsets_in(pg_dsn, globex) == [2]
    assert [(r[2], r[3], "'nobody'" in r[5]) for r in dead_letters(pg_dsn)] == [(1, "route", True),
                                                                                   (4, "route", True)]


def test_with_tolerance_none_a_partition_stops_at_its_first_unregistered_record(pg_dsn, registered):
    acme, _ = registered
    with ConnectionPool(pg_dsn, min_size=1, max_size=2, open=True) as pool:
        writer = writer_for(pool)
        outcome = writer.write(routed_batch([acme, acme, "nobody", acme], tolerate=False), {0: None},
                               tolerate=False)
        assert [(d.offset, d.stage) for d in outcome.stopped_at] == [(2, "route")]
        assert outcome.next_offsets == {0: 2} and outcome.rejected == []
    assert offsets_in(pg_dsn, acme) == [0, 1]  # nothing from the unregistered record on


def test_remove_waits_for_a_write_holding_the_registry_row_and_a_later_write_sees_the_tenant_gone(
        pg_dsn, registered):
    acme, globex = registered
    holder = psycopg.connect(pg_dsn)
    holder.execute(REGISTERED_TENANTS, ([acme],))  # what a write of acme's rows holds until its commit
    removed = threading.Event()

    def remove():
        with psycopg.connect(pg_dsn) as conn:
            remove_tenant(conn, acme, drop_data=True)
        removed.set()

    remover = threading.Thread(target=remove, daemon=True)
    remover.start()
    time.sleep(2)
    assert not removed.is_set(), "tenants remove did not wait for the write holding the tenant's row"
    holder.commit()
    holder.close()
    remover.join(30)
    assert removed.is_set()

    with ConnectionPool(pg_dsn, min_size=1, max_size=2, open=True) as pool:
        outcome = writer_for(pool).write(routed_batch([acme, globex]), {0: None})  # no SQLSTATE 3F000
    assert [(d.offset, d.stage) for d in outcome.rejected] == [(0, "route")]
    assert offsets_in(pg_dsn, globex) == [1]
