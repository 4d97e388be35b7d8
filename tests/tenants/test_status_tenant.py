"""`sinkframe status --tenant NAME` on the real PostgreSQL (plain, with the opt-in) and broker.

Two tenants are provisioned with `sinkframe tenants add`; public's tables are not
created at all, so what status says about rows and the schema can only come from
the tenant's schema. Offsets and dead letters stay the connector's, in public.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
from psycopg import sql

from sinkframe.devservices import free_port
from sinkframe.pipeline.batch import DeadLetter
from sinkframe.pipeline.write.deadletter import create_dead_letter_table, insert_dead_letters

from sinktest.config import write_connector
from sinktest.paths import REPO
from tenanthelp import run

DEAD_LETTERS = "sinkframe_dead_letters"
NOW = datetime.now(timezone.utc)


@pytest.fixture
def setup(kafka_bootstrap, pg_dsn, new_topic, tmp_path, tenant_names):
    """(connector file, env, acme, globex): a routed raw connector, two tenants, no tables in public."""
    acme, globex = tenant_names("acme", "globex")
    env = {"SINKFRAME_PLAIN_POSTGRES": "1", "SINKFRAME_SCHEMA_DIR": str(REPO / "schema"),
           "REDPANDA_BROKERS": kafka_bootstrap}
    for name in (acme, globex):
        result = run("tenants", "add", name, "--database-url", pg_dsn, env=env)
        assert result.exit_code == 0, result.output
    connector = write_connector(tmp_path, name="routed", topic=new_topic(partitions=2),
                                extra='tenant: {key_prefix: ":"}\n')
    return connector, env, acme, globex


def status(dsn: str, connector, env: dict, *args: str):
    return run("status", str(connector), "--database-url", dsn, *args, env=env)


def status_json(dsn: str, connector, env: dict, *args: str) -> dict:
    result = status(dsn, connector, env, "-o", "json", *args)
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout)


def insert_raw(dsn: str, tenant: str, count: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany(sql.SQL("INSERT INTO {} (time, device_id, source_topic, source_partition, source_offset) "
                                "VALUES (%s, %s, 'iot.raw', 0, %s)").format(
                            sql.Identifier(f"tenant_{tenant}", "iot_raw_data")),
                        [(NOW - timedelta(minutes=5), f"dev-{i}", i) for i in range(count)])


def add_dead_letters(dsn: str, reasons: list[tuple[str, str]]) -> None:
    """Dead letters of connector `routed`, as (stage, error message), written by the sink's own code."""
    letters = [DeadLetter("t", 0, i, None, b"k", b"{}", None, stage, "UnknownTenant", message)
               for i, (stage, message) in enumerate(reasons)]
    with psycopg.connect(dsn, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(create_dead_letter_table(DEAD_LETTERS))
        insert_dead_letters(cur, DEAD_LETTERS, "routed", letters)


def test_status_of_a_tenant_shows_its_own_rows_schema_and_route_dead_letters(pg_dsn, setup):
    connector, env, acme, globex = setup
    insert_raw(pg_dsn, acme, 3)
    unknown = "unknown tenant {!r} (not registered: sinkframe tenants add)".format
    add_dead_letters(pg_dsn, [("route", unknown(acme)), ("route", unknown(acme)),
                              ("route", unknown(f"{acme}_eu")), ("decode", f"not JSON, from {acme!r}?")])

    mine = status_json(pg_dsn, connector, env, "--tenant", acme)
    theirs = status_json(pg_dsn, connector, env, "--tenant", globex)
    shared = status_json(pg_dsn, connector, env)

    assert (mine["tenant"], mine["tenant_schema"]) == (acme, f"tenant_{acme}")
    assert mine["ok"] and theirs["ok"], (mine, theirs)
    (a,), (g,), (p,) = mine["connectors"], theirs["connectors"], shared["connectors"]
    assert a["tables"] == [{"table": "iot_raw_data", "last_minute": 3, "last_hour": 3, "note": None}]
    assert g["tables"] == [{"table": "iot_raw_data", "last_minute": 0, "last_hour": 0, "note": None}]
    assert p["tables"][0]["note"] == "table does not exist"  # public has no tables: nothing came from there
    # The drift check ran on the tenant's schema (public's would want every table created).
    assert a["schema"] == g["schema"] == "up to date"
    assert p["schema"].startswith("drift")
    # Dead letters are the connector's, whichever tenant; of stage route, only those naming it.
    assert a["dead_letters"] == g["dead_letters"] == p["dead_letters"] == 4
    assert (a["tenant_dead_letters"], g["tenant_dead_letters"], p["tenant_dead_letters"]) == (2, 0, None)
    # Offsets and watermarks are the connector's too.
    assert [x["partition"] for x in a["partitions"]] == [x["partition"] for x in p["partitions"]] == [0, 1]

    text = status(pg_dsn, connector, env, "--tenant", acme)
    assert text.exit_code == 0, text.output
    assert f"tenant:   {acme} (tables in schema tenant_{acme}" in text.stdout
    assert f"rows ingested in tenant_{acme} (last 1m / 1h): iot_raw_data 3 / 3" in text.stdout
    assert f"dead letters: 4 (2 at stage route naming tenant {acme})" in text.stdout


def test_status_shows_drift_in_the_tenants_schema_only(pg_dsn, setup):
    connector, env, acme, globex = setup
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP INDEX {}").format(
            sql.Identifier(f"tenant_{globex}", "iot_raw_data_device_id_time_idx")))
    assert status_json(pg_dsn, connector, env, "--tenant", acme)["connectors"][0]["schema"] == "up to date"
    drifted = status_json(pg_dsn, connector, env, "--tenant", globex)["connectors"][0]
    # What `sinkframe schema plan` would do for that tenant: the index, then its grants again.
    assert drifted["schema"].startswith("drift: 2 change(s) pending"), drifted
    assert drifted["schema_details"][0] == "create index iot_raw_data_device_id_time_idx on iot_raw_data"

@pytest.mark.parametrize("name", ["Acme", "acme; DROP TABLE x", "acme'--", "tenant.x", "a" * 42, ""])
def test_a_hostile_tenant_name_is_refused_before_connecting(tmp_path, name):
    # Nothing listens on these ports: had it tried to connect, the answer would be "unreachable".
    nowhere = f"127.0.0.1:{free_port()}"
    connector = write_connector(tmp_path, name="routed", topic="t")
    result = run("status", str(connector), "--tenant", name, "--database-url",
                 f"postgresql://sink@{nowhere}/db", "--brokers", nowhere)
    assert result.exit_code == 2, result.output
    assert f"error: tenant name {name!r} is not allowed" in result.stderr
    assert result.stdout == "" and "unreachable" not in result.output


def test_an_unregistered_tenant_is_an_error_naming_it(pg_dsn, setup):
    connector, env, acme, globex = setup
    result = status(pg_dsn, connector, env, "--tenant", "nobody")
    assert result.exit_code == 2, result.output
    assert "error: no tenant named 'nobody'" in result.stderr
    assert acme in result.stderr and globex in result.stderr  # what is registered
    assert result.stdout == ""
