"""The schema module on plain PostgreSQL (no timescaledb extension): refusal, opt-in, concurrency."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import psycopg
import pytest

from sinkframe.errors import SchemaError
from sinkframe.schema import apply_schema, load_schema, plan_schema
from sinkframe.schema.apply import ADVISORY_LOCK_KEY

REPO = Path(__file__).resolve().parents[2]
SPEC = load_schema(REPO / "schema", env={})
WAITING_FOR_LOCKS = ("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                     "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")


def relations(conn) -> set[str]:
    return {r[0] for r in conn.execute(
        "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'v')")}


def test_without_opt_in_apply_refuses_with_what_to_do(pg_dsn):
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        with pytest.raises(SchemaError) as caught:
            apply_schema(conn, SPEC)
        assert relations(conn) == set()
    message = str(caught.value)
    assert "timescaledb extension is not installed" in message
    assert "Install TimescaleDB" in message and "CREATE EXTENSION timescaledb" in message
    assert "SINKFRAME_PLAIN_POSTGRES=1" in message and "--plain-postgres" in message


def test_with_opt_in_creates_plain_tables_and_indexes_and_lists_what_it_skipped(pg_dsn):
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        plan = apply_schema(conn, SPEC, plain_postgres=True)
        assert relations(conn) == SPEC.table_names()
        indexes = {r[0] for r in conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")}
        columns = conn.execute(
            "SELECT column_name, data_type, is_nullable, column_default FROM information_schema.columns "
            "WHERE table_name = 'smart_breaker_data' ORDER BY ordinal_position").fetchall()
        again = apply_schema(conn, SPEC, plain_postgres=True)
    assert plan.plain_postgres and not plan.drift
    for table in ("iot_raw_data", "iot_enriched_data", "smart_breaker_data"):
        assert {f"{table}_device_id_time_idx", f"{table}_time_idx"} <= indexes
        assert f"hypertable {table} (time column time, chunk_time_interval 1 day)" in plan.skipped
        assert f"compression of {table} with its policy (compress_after 1 hour)" in plan.skipped
        assert f"retention policy of {table} (drop_after 30 days)" in plan.skipped
    assert "device_metadata_pkey" in indexes
    for cagg in SPEC.continuous_aggregates:
        assert any(s.startswith(f"continuous aggregate {cagg} ") for s in plan.skipped)
    assert len(plan.skipped) == 3 * 3 + len(SPEC.continuous_aggregates)
    assert columns[0] == ("time", "timestamp with time zone", "NO", None)
    assert columns[-1] == ("ingested_at", "timestamp with time zone", "NO", "now()")
    assert again.steps == [] and again.skipped == plan.skipped


def test_write_path_works_on_plain_tables(pg_dsn):
    now = datetime.now(timezone.utc)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        apply_schema(conn, SPEC, plain_postgres=True)
        conn.execute("INSERT INTO smart_breaker_data (time, device_id, voltage_phase_a, source_topic, "
                     "source_partition, source_offset) VALUES (%s, 'd', 230.5, 't', 0, 1)", [now])
        for seen in (now, now):
            conn.execute("INSERT INTO device_metadata (device_id, model, first_seen, last_seen) "
                         "VALUES ('d', 'x', %s, %s) ON CONFLICT (device_id) DO UPDATE SET model = EXCLUDED.model",
                         [seen, seen])
        assert conn.execute("SELECT count(*), min(ingested_at) IS NOT NULL FROM smart_breaker_data").fetchone() \
            == (1, True)
        assert conn.execute("SELECT count(*) FROM device_metadata").fetchone()[0] == 1


def test_concurrent_apply_from_two_connections_is_safe(pg_dsn):
    results: list = [None, None]

    def run(slot: int) -> None:
        try:
            with psycopg.connect(pg_dsn, autocommit=True) as conn:
                results[slot] = apply_schema(conn, SPEC, plain_postgres=True)
        except Exception as err:  # reported below
            results[slot] = err

    with psycopg.connect(pg_dsn, autocommit=True) as holder:
        # Hold the schema lock so that both appliers are provably queued, then let them race.
        holder.execute("SELECT pg_advisory_lock(%s)", [ADVISORY_LOCK_KEY])
        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while holder.execute(WAITING_FOR_LOCKS).fetchone()[0] < 2:
            assert time.monotonic() < deadline, "the appliers never waited for the schema lock"
            time.sleep(0.02)
        holder.execute("SELECT pg_advisory_unlock(%s)", [ADVISORY_LOCK_KEY])
    for t in threads:
        t.join(30)
    assert not any(isinstance(r, Exception) for r in results), results
    step_counts = sorted(len(r.steps) for r in results)
    assert step_counts[0] == 0 and step_counts[1] > 0  # one did everything, the other found nothing left
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        assert relations(conn) == SPEC.table_names()
        assert conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())").fetchone()[0] == 0


def test_connection_modes_are_respected(pg_dsn):
    with psycopg.connect(pg_dsn) as conn:  # not autocommit
        plan = plan_schema(conn, SPEC, plain_postgres=True)
        assert plan.steps and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        apply_schema(conn, SPEC, plain_postgres=True)
        assert conn.autocommit is False
        conn.execute("SELECT 1")
        with pytest.raises(SchemaError, match="outside a transaction"):
            apply_schema(conn, SPEC, plain_postgres=True)
        conn.rollback()


def test_column_drift_on_plain_tables(pg_dsn, tmp_path):
    spec_file = tmp_path / "t.yaml"
    spec_file.write_text("""
tables:
  things:
    columns:
      - {name: id, type: bigint, nullable: false}
      - {name: label, type: text}
      - {name: state, type: text, nullable: false, default: "'new'"}
    primary_key: [id]
    unique: [[label]]
""")
    spec = load_schema(spec_file)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE things (id integer, label text NOT NULL, other text)")
        plan = plan_schema(conn, spec)
        assert [str(d) for d in plan.drift] == [
            "things.id: type is integer, spec says bigint; apply does not change column types (a rewrite "
            "that may fail or lose data); ALTER it by hand",
            "things.id: allows NULL, spec says NOT NULL; apply does not add NOT NULL (it fails if NULLs exist); "
            "ALTER it by hand",
            "things.label: is NOT NULL, spec says nullable; apply drops NOT NULL",
            "things.state: column is missing; apply adds it",
            "things.other: column is not in the spec; apply leaves it (dropping a column loses data)",
            "things: has no primary key; apply adds PRIMARY KEY (id)",
            "things: has no unique key on (label); apply adds it",
        ]
        apply_schema(conn, spec)
        after = plan_schema(conn, spec)
        assert after.steps == []
        assert len(after.drift) == 2  # the type and the extra column stay as they are


def test_failed_step_rolls_back_its_transaction_and_names_the_step(pg_dsn, tmp_path):
    spec_file = tmp_path / "t.yaml"
    spec_file.write_text("""
tables:
  good:
    columns: [{name: id, type: int}]
  bad:
    columns: [{name: id, type: int, default: "no_such_function()"}]
""")
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        with pytest.raises(SchemaError) as caught:
            apply_schema(conn, load_schema(spec_file), plain_postgres=True)
        assert relations(conn) == set()  # `good` was in the same transaction
    assert "step 2/2, create table bad" in str(caught.value)
    assert "no_such_function" in str(caught.value)
