"""The shipped schema against TimescaleDB: a database of the test's own on a real server, or
the embedded engine (one per module) when there is none (see tests/conftest.py).

Every step opens and closes its own connection (`timescale.connect()`): the engine
accepts one at a time. The tests that run policy jobs themselves (`CALL run_job`)
first take the jobs off the real server's scheduler (`hold_jobs`), so that its
background workers do not run them in between; tests/timescale/ has the ones that
let the scheduler run them. Rows go in with INSERT (the engine has no COPY).
"""
from __future__ import annotations

import random
import time
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner
from psycopg import sql

from sinkframe.schema import apply_schema, load_schema, plan_schema
from sinkframe.cli.schema import schema_group

from sinktest.tsdb import job_id

pytestmark = [pytest.mark.timescale, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SCHEMA_DIR = REPO / "schema"
HYPERTABLES = ("iot_raw_data", "iot_enriched_data", "smart_breaker_data")
CAGGS = ("iot_raw_hourly_counts", "iot_raw_daily_counts", "iot_enriched_hourly_counts",
         "iot_enriched_daily_counts", "smart_breaker_hourly_stats", "smart_breaker_daily_stats")
STATS_COLUMNS = ("voltage_phase_a", "voltage_phase_b", "voltage_phase_c", "current_phase_a",
                 "current_phase_b", "current_phase_c", "temperature", "active_power")
SEED_HOURLY_QUERY = ("SELECT time_bucket('1 hour', time) as bucket, AVG(voltage_phase_a) as avg_voltage "
                     "FROM smart_breaker_data WHERE time > NOW() - INTERVAL '24 hours' GROUP BY bucket "
                     "ORDER BY bucket;")
SEED_DAILY_QUERY = "SELECT * FROM smart_breaker_daily_stats WHERE bucket > NOW() - INTERVAL '7 days';"


def cli(*args: str):
    result = CliRunner().invoke(schema_group, list(args), env={"SINKFRAME_PLAIN_POSTGRES": None})
    time.sleep(0.05)  # the engine frees its one connection slot a moment after a client leaves
    return result


PROVISIONED: dict[str, tuple] = {}  # dsn -> the three results: the engine's database serves a whole module


@pytest.fixture
def provisioned(timescale_dsn):
    """plan on the empty database, apply, plan again: through the CLI, as a user would."""
    if timescale_dsn not in PROVISIONED:
        first = cli("plan", str(SCHEMA_DIR), "--database-url", timescale_dsn, "--detailed-exitcode")
        applied = cli("apply", str(SCHEMA_DIR), "--database-url", timescale_dsn)
        second = cli("plan", str(SCHEMA_DIR), "--database-url", timescale_dsn, "--detailed-exitcode")
        PROVISIONED[timescale_dsn] = first, applied, second
    return PROVISIONED[timescale_dsn]


def run_job(conn, relation: str, proc: str) -> None:
    conn.execute(sql.SQL("CALL run_job({})").format(sql.Literal(job_id(conn, relation, proc))))


def refresh(conn, cagg: str) -> None:
    conn.execute(sql.SQL("CALL refresh_continuous_aggregate({}, NULL, NULL)").format(sql.Literal(cagg)))


def insert_breaker_rows(conn, rows: list[dict]) -> None:
    columns = ["time", "device_id", *STATS_COLUMNS, "source_topic", "source_partition", "source_offset"]
    statement = sql.SQL("INSERT INTO smart_breaker_data ({}) VALUES ({})").format(
        sql.SQL(", ").join(map(sql.Identifier, columns)), sql.SQL(", ").join(sql.Placeholder() * len(columns)))
    with conn.cursor() as cur:
        cur.executemany(statement, [[r.get(c) for c in columns] for r in rows])


def raw_row(time: datetime, device: str, offset: int) -> list:
    return [time, device, "iot.raw", 0, offset]


def insert_raw(conn, table: str, rows: list[list]) -> None:
    with conn.cursor() as cur:
        cur.executemany(sql.SQL("INSERT INTO {} (time, device_id, source_topic, source_partition, source_offset) "
                                "VALUES (%s, %s, %s, %s, %s)").format(sql.Identifier(table)), rows)


def floor(t: datetime, width: timedelta) -> datetime:
    """time_bucket for hour and day widths (buckets aligned to UTC midnight)."""
    epoch = datetime(2000, 1, 1, tzinfo=timezone.utc)
    return epoch + ((t - epoch) // width) * width


def stats(values: list[float | None]) -> tuple:
    present = [v for v in values if v is not None]
    if not present:
        return None, None, None
    return sum(present) / len(present), min(present), max(present)


def approx_row(row: dict) -> dict:
    return {k: pytest.approx(v) if isinstance(v, float) else v for k, v in row.items()}


# --- provisioning --------------------------------------------------------------------------

def test_plan_on_empty_database_prints_full_ddl(provisioned):
    first, _applied, _second = provisioned
    assert first.exit_code == 2, first.output
    script = first.stdout
    for table in (*HYPERTABLES, "device_metadata"):
        assert f'CREATE TABLE IF NOT EXISTS "{table}"' in script
    for table in HYPERTABLES:
        assert f"SELECT create_hypertable('\"{table}\"'::regclass, 'time', chunk_time_interval => '1 day'" in script
        assert f"SELECT add_compression_policy('\"{table}\"'::regclass, compress_after => '1 hour'" in script
        assert f"SELECT add_retention_policy('\"{table}\"'::regclass, drop_after => '30 days'" in script
        assert f'CREATE INDEX IF NOT EXISTS "{table}_device_id_time_idx"' in script
    for cagg in CAGGS:
        assert f'CREATE MATERIALIZED VIEW "{cagg}" WITH (timescaledb.continuous' in script
        assert f"SELECT add_continuous_aggregate_policy('\"{cagg}\"'::regclass" in script
    assert "step(s) to apply" in first.stderr


def test_apply_creates_everything_and_second_plan_is_empty(provisioned, timescale_dsn, timescale):
    _first, applied, second = provisioned
    assert applied.exit_code == 0, applied.output
    assert "step(s) applied" in applied.stderr
    assert second.exit_code == 0, second.output
    assert second.stdout == ""
    assert "nothing to apply" in second.stderr and "drift" not in second.stderr
    # Again, in a new connection to the same engine session: nothing may clash with what the
    # previous run left in the session (e.g. server-side prepared statements).
    third = cli("plan", str(SCHEMA_DIR), "--database-url", timescale_dsn, "--detailed-exitcode")
    assert (third.exit_code, third.stdout) == (0, ""), third.output
    with timescale.connect() as conn:
        assert apply_schema(conn, load_schema(SCHEMA_DIR)).steps == []
        caggs = {r[0]: r[1] for r in conn.execute(
            "SELECT view_name, materialized_only FROM timescaledb_information.continuous_aggregates")}
        assert set(CAGGS) <= set(caggs) and not any(caggs[c] for c in CAGGS)
        policies = conn.execute("SELECT hypertable_name, proc_name FROM timescaledb_information.jobs").fetchall()
    for table in HYPERTABLES:
        assert (table, "policy_compression") in policies and (table, "policy_retention") in policies
    for cagg in CAGGS:
        assert (cagg, "policy_refresh_continuous_aggregate") in policies


def test_hypertables_have_declared_chunk_interval_and_compression(provisioned, timescale_dsn, timescale):
    with timescale.connect() as conn:
        dims = dict(conn.execute("SELECT hypertable_name, time_interval FROM timescaledb_information.dimensions "
                                 "WHERE hypertable_schema = 'public' AND column_name = 'time'").fetchall())
        settings = conn.execute("SELECT hypertable_name, attname, segmentby_column_index, orderby_asc "
                                "FROM timescaledb_information.compression_settings").fetchall()
    for table in HYPERTABLES:
        assert dims[table] == timedelta(days=1)
        assert (table, "device_id", 1, None) in settings
        assert (table, "time", None, False) in settings


# --- the write path and what TimescaleDB does with it ---------------------------------------

def test_caggs_and_seed_queries_match_python(provisioned, timescale_dsn, timescale):
    rng = random.Random(7)
    now = datetime.now(timezone.utc)
    base = now.replace(minute=0, second=0, microsecond=0)
    rows = []
    for device in ("agg-1", "agg-2", "agg-3"):
        for hours_ago in [*range(0, 24), *range(25, 60)]:  # nothing near the 24 h edge of the seed query
            for minute in (5, 35):
                row = {"time": base - timedelta(hours=hours_ago) + timedelta(minutes=minute), "device_id": device,
                       "source_topic": "t", "source_partition": 0, "source_offset": len(rows)}
                row.update({c: round(rng.uniform(100, 250), 3) for c in STATS_COLUMNS})
                if rng.random() < 0.1:
                    row["temperature"] = None  # NULLs are ignored by avg/min/max, counted by count(*)
                rows.append(row)
    with timescale.connect() as conn:
        insert_breaker_rows(conn, rows)
        refresh(conn, "smart_breaker_hourly_stats")
        refresh(conn, "smart_breaker_daily_stats")

    for cagg, width in (("smart_breaker_hourly_stats", timedelta(hours=1)),
                        ("smart_breaker_daily_stats", timedelta(days=1))):
        groups = defaultdict(list)
        for row in rows:
            groups[(row["device_id"], floor(row["time"], width))].append(row)
        expected = {}
        for key, members in groups.items():
            values = {"sample_count": len(members)}
            for column in STATS_COLUMNS:
                values.update(zip((f"avg_{column}", f"min_{column}", f"max_{column}"),
                                  stats([m[column] for m in members])))
            expected[key] = approx_row(values)
        with timescale.connect() as conn:
            cur = conn.execute(sql.SQL("SELECT * FROM {} WHERE device_id LIKE 'agg-%'").format(sql.Identifier(cagg)))
            names = [d.name for d in cur.description]
            actual = {(r["device_id"], r["bucket"]): {k: v for k, v in r.items() if k not in ("device_id", "bucket")}
                      for r in (dict(zip(names, row)) for row in cur.fetchall())}
        assert actual == expected, cagg

    # The seed's example queries, unchanged, against everything in the table.
    with timescale.connect() as conn, conn.transaction():  # one transaction: one now()
        db_now = conn.execute("SELECT now()").fetchone()[0]
        hourly = conn.execute(SEED_HOURLY_QUERY).fetchall()
        cur = conn.execute(SEED_DAILY_QUERY)
        names = [d.name for d in cur.description]
        daily = [dict(zip(names, r)) for r in cur.fetchall()]
        all_rows = conn.execute("SELECT time, device_id, voltage_phase_a FROM smart_breaker_data").fetchall()
    by_hour = defaultdict(list)
    for time, _device, voltage in all_rows:
        if time > db_now - timedelta(hours=24):
            by_hour[floor(time, timedelta(hours=1))].append(voltage)
    assert [b for b, _ in hourly] == sorted(by_hour)
    assert [a for _, a in hourly] == pytest.approx([stats(by_hour[b])[0] for b in sorted(by_hour)])
    assert len(hourly) == 24

    day_counts = defaultdict(int)
    for time, device, _voltage in all_rows:
        day = floor(time, timedelta(days=1))
        if day > db_now - timedelta(days=7):
            day_counts[(device, day)] += 1
    assert {(r["device_id"], r["bucket"]): r["sample_count"] for r in daily} == day_counts
    assert names[:2] == ["bucket", "device_id"] and "avg_voltage_phase_a" in names


def test_compression_job_late_data_and_cagg_refresh(provisioned, timescale_dsn, timescale):
    timescale.hold_jobs()
    now = datetime.now(timezone.utc)
    device = "comp-1"
    times = [now - timedelta(days=2, minutes=m) for m in (0, 10, 20)] + [now - timedelta(minutes=1)]
    with timescale.connect() as conn:
        insert_raw(conn, "iot_raw_data", [raw_row(t, device, i) for i, t in enumerate(times)])
        refresh(conn, "iot_raw_hourly_counts")
        run_job(conn, "iot_raw_data", "policy_compression")
        chunks = conn.execute(
            "SELECT range_end, is_compressed FROM timescaledb_information.chunks "
            "WHERE hypertable_name = 'iot_raw_data'").fetchall()
    assert chunks
    for range_end, compressed in chunks:
        assert compressed == (range_end < now - timedelta(hours=1)), chunks
    assert any(c for _, c in chunks) and not all(c for _, c in chunks)

    late = now - timedelta(days=2, minutes=5)  # lands in the compressed chunk
    bucket = floor(late, timedelta(hours=1))
    count_sql = ("SELECT sum(message_count) FROM iot_raw_hourly_counts "
                 "WHERE device_id = %s AND bucket = %s")
    with timescale.connect() as conn:
        before = conn.execute(count_sql, [device, bucket]).fetchone()[0]
        insert_raw(conn, "iot_raw_data", [raw_row(late, device, 99)])
        assert conn.execute("SELECT count(*) FROM iot_raw_data WHERE device_id = %s AND time = %s",
                            [device, late]).fetchone()[0] == 1
        stale = conn.execute(count_sql, [device, bucket]).fetchone()[0]
        run_job(conn, "iot_raw_hourly_counts", "policy_refresh_continuous_aggregate")
        after = conn.execute(count_sql, [device, bucket]).fetchone()[0]
    expected = sum(1 for t in [*times, late] if floor(t, timedelta(hours=1)) == bucket)
    assert (before, stale, after) == (expected - 1, expected - 1, expected)


def test_retention_job_drops_old_chunks(provisioned, timescale_dsn, timescale):
    timescale.hold_jobs()
    now = datetime.now(timezone.utc)
    device = "ret-1"
    ages = {"old": timedelta(days=40), "older": timedelta(days=35), "recent": timedelta(days=1)}
    with timescale.connect() as conn:
        insert_raw(conn, "iot_enriched_data", [raw_row(now - age, device, i) for i, age in enumerate(ages.values())])
        chunks_before = conn.execute("SELECT count(*) FROM timescaledb_information.chunks "
                                     "WHERE hypertable_name = 'iot_enriched_data'").fetchone()[0]
        run_job(conn, "iot_enriched_data", "policy_retention")
        remaining = [r[0] for r in conn.execute(
            "SELECT time FROM iot_enriched_data WHERE device_id = %s", [device])]
        oldest_end = conn.execute("SELECT min(range_end) FROM timescaledb_information.chunks "
                                  "WHERE hypertable_name = 'iot_enriched_data'").fetchone()[0]
        chunks_after = conn.execute("SELECT count(*) FROM timescaledb_information.chunks "
                                    "WHERE hypertable_name = 'iot_enriched_data'").fetchone()[0]
    assert remaining == [now - ages["recent"]]
    assert chunks_after == chunks_before - 2
    assert oldest_end > now - timedelta(days=30)


# --- test-only specs: upserts, drift ----------------------------------------------------------

UPSERT_SPEC = """
tables:
  upsert_readings:
    columns:
      - {name: time, type: timestamptz, nullable: false}
      - {name: device_id, type: text, nullable: false}
      - {name: value, type: double precision}
    unique: [[time, device_id]]
    hypertable:
      time_column: time
      chunk_time_interval: 1 day
      compression: {segment_by: [device_id], order_by: [time DESC]}
"""


def test_upsert_on_key_with_time_column_including_compressed_chunk(timescale_dsn, timescale, tmp_path):
    (tmp_path / "upsert.yaml").write_text(UPSERT_SPEC)
    spec = load_schema(tmp_path)
    t1 = datetime(2024, 1, 1, 10, tzinfo=timezone.utc)
    t2 = t1 + timedelta(hours=1)
    upsert = ("INSERT INTO upsert_readings (time, device_id, value) VALUES (%s, %s, %s) "
              "ON CONFLICT (time, device_id) DO UPDATE SET value = EXCLUDED.value")
    with timescale.connect() as conn:
        plan = apply_schema(conn, spec)
        assert any("unique" in s.sql.as_string(conn).lower() for s in plan.steps)
        for args in ([t1, "u", 1.0], [t2, "u", 2.0], [t1, "u", 3.0]):
            conn.execute(upsert, args)
        conn.execute("SELECT compress_chunk(c) FROM show_chunks('upsert_readings') c")
        conn.execute(upsert, [t2, "u", 4.0])  # into the compressed chunk
        conn.execute(upsert, [t2 + timedelta(minutes=1), "u", 5.0])
        rows = conn.execute("SELECT time, value FROM upsert_readings ORDER BY time").fetchall()
        assert plan_schema(conn, spec).steps == []
    assert rows == [(t1, 3.0), (t2, 4.0), (t2 + timedelta(minutes=1), 5.0)]


DRIFT_SPEC = """
tables:
  drift_readings:
    columns:
      - {name: time, type: timestamptz, nullable: false}
      - {name: device_id, type: text, nullable: false}
      - {name: value, type: double precision}
      - {name: note, type: text, default: "'none'"}
    indexes:
      - columns: [device_id, time DESC]
    hypertable:
      time_column: time
      chunk_time_interval: 1 day
      compression: {segment_by: [device_id], order_by: [time DESC], compress_after: 2 hours}
      retention: {drop_after: 60 days}
continuous_aggregates:
  drift_readings_hourly:
    source: drift_readings
    bucket_width: 1 hour
    group_by: [device_id]
    aggregates: [{functions: [avg, max], columns: [value]}, {function: count, name: n}]
    refresh: {start_offset: 2 days, end_offset: 1 hour, schedule_interval: 15 minutes}
"""


def test_manual_changes_show_as_drift_and_apply_restores_them(timescale_dsn, timescale, tmp_path):
    (tmp_path / "drift.yaml").write_text(DRIFT_SPEC)
    spec = load_schema(tmp_path)
    with timescale.connect() as conn:
        apply_schema(conn, spec)
        assert plan_schema(conn, spec).drift == []
        for statement in (
            "SELECT set_chunk_time_interval('drift_readings', INTERVAL '3 days')",
            "ALTER TABLE drift_readings SET (timescaledb.compress_segmentby = '')",
            "SELECT remove_compression_policy('drift_readings')",
            "SELECT add_compression_policy('drift_readings', INTERVAL '5 hours')",
            "ALTER TABLE drift_readings ADD COLUMN extra integer",
            "ALTER TABLE drift_readings DROP COLUMN note",
            "ALTER MATERIALIZED VIEW drift_readings_hourly SET (timescaledb.materialized_only = true)",
        ):
            conn.execute(statement)
        conn.execute(sql.SQL("SELECT alter_job({}, schedule_interval => INTERVAL '1 hour')").format(
            sql.Literal(job_id(conn, "drift_readings_hourly", "policy_refresh_continuous_aggregate"))))

    result = cli("plan", str(tmp_path), "--database-url", timescale_dsn)
    assert result.exit_code == 0, result.output
    drift = [line for line in result.stderr.splitlines() if line.startswith("drift: ")]
    expected = [
        "drift_readings: chunk_time_interval is 3 days, spec says 1 day; apply sets it",
        "drift_readings: compression segments by (nothing)",
        "drift_readings: compression policy has compress_after 05:00:00, spec says 2 hours; apply replaces",
        "drift_readings.extra: column is not in the spec; apply leaves it",
        "drift_readings.note: column is missing; apply adds it",
        "drift_readings_hourly: materialized_only is True, spec says False; apply sets it",
        "drift_readings_hourly: refresh policy schedule_interval is 01:00:00, spec says 15 minutes",
    ]
    for text in expected:
        assert any(line.startswith(f"drift: {text}") for line in drift), f"{text!r} not in {drift}"
    assert len(drift) == len(expected)
    assert "SELECT set_chunk_time_interval" in result.stdout

    with timescale.connect() as conn:
        apply_schema(conn, spec)
        after = plan_schema(conn, spec)
        interval = conn.execute("SELECT time_interval FROM timescaledb_information.dimensions "
                                "WHERE hypertable_name = 'drift_readings'").fetchone()[0]
    assert after.steps == []
    assert [str(d) for d in after.drift] == [
        "drift_readings.extra: column is not in the spec; apply leaves it (dropping a column loses data)"]
    assert interval == timedelta(days=1)


def test_changed_cagg_definition_is_drift_and_never_recreated(timescale_dsn, timescale, tmp_path):
    original = DRIFT_SPEC.replace("drift_readings", "cagg_readings")
    (tmp_path / "cagg.yaml").write_text(original)
    with timescale.connect() as conn:
        apply_schema(conn, load_schema(tmp_path))
    changed = original.replace("functions: [avg, max]", "functions: [avg, min]")
    (tmp_path / "cagg.yaml").write_text(changed)
    with timescale.connect() as conn:
        plan = plan_schema(conn, load_schema(tmp_path))
    assert plan.steps == []
    [finding] = plan.drift
    assert finding.object == "cagg_readings_hourly"
    assert "columns differ (missing: min_value; not in spec: max_value" in finding.difference
    assert "DROP MATERIALIZED VIEW cagg_readings_hourly" in finding.action

    (tmp_path / "cagg.yaml").write_text(original.replace("bucket_width: 1 hour", "bucket_width: 2 hours"))
    with timescale.connect() as conn:
        [finding] = plan_schema(conn, load_schema(tmp_path)).drift
    assert "its query (bucket width, time column or aggregate functions) differs" in finding.difference

    (tmp_path / "cagg.yaml").write_text(original)
    with timescale.connect() as conn:
        conn.execute("DROP MATERIALIZED VIEW cagg_readings_hourly")
        plan = apply_schema(conn, load_schema(tmp_path))
        assert plan.drift == [] and plan_schema(conn, load_schema(tmp_path)).steps == []
    assert [s.transactional for s in plan.steps] == [False, True]  # the view alone, then its policy


def test_tables_filter_plans_only_those_and_their_aggregates(timescale_dsn, timescale, tmp_path):
    spec_text = UPSERT_SPEC.replace("upsert_readings", "filtered_a") + UPSERT_SPEC.replace(
        "upsert_readings", "filtered_b").replace("tables:\n", "")
    (tmp_path / "f.yaml").write_text(spec_text)
    spec = load_schema(tmp_path)
    with timescale.connect() as conn:
        plan = apply_schema(conn, spec, tables={"filtered_a"})
        text = plan.as_text(conn)
        assert '"filtered_a"' in text and "filtered_b" not in text
        rest = plan_schema(conn, spec)
    assert rest.steps and all("filtered_b" in s.description for s in rest.steps)


def test_docs_example_spec_applies_cleanly(timescale_dsn, timescale, tmp_path):
    """The full-featured example of docs/schema.md: space partitioning, unique key, first/last,
    retention on an aggregate."""
    import re

    block = re.search(r"```yaml\n(.*?)```", (REPO / "docs" / "schema.md").read_text(), re.S)[1]
    (tmp_path / "readings.yaml").write_text(block)
    spec = load_schema(tmp_path, env={})
    with timescale.connect() as conn:
        plan = apply_schema(conn, spec)
        assert any("add_dimension" in s.sql.as_string(conn) for s in plan.steps)
        second = plan_schema(conn, spec)
        dims = conn.execute("SELECT column_name, num_partitions FROM timescaledb_information.dimensions "
                            "WHERE hypertable_name = 'readings' ORDER BY dimension_number").fetchall()
        jobs = conn.execute("SELECT proc_name FROM timescaledb_information.jobs "
                            "WHERE hypertable_name = 'readings_hourly' ORDER BY proc_name").fetchall()
    assert second.steps == [] and second.drift == []
    assert dims == [("time", None), ("device_id", 4)]
    assert jobs == [("policy_refresh_continuous_aggregate",), ("policy_retention",)]
