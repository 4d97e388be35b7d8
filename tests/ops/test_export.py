"""`sinkframe export` reproduces exactly the rows of a time range, as CSV and as JSON lines."""
from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql

from sinkframe.cli import cli
from sinkframe.errors import ConfigError
from sinkframe.ops.export import ExportRequest, export_to
from sinkframe.mapping import KafkaRecord
from sinkframe.mapping.decode import decode_json_object
from sinkframe.schema import apply_schema, load_schema
from sinkframe.config.settings import Settings
from sinkframe.simulator import Fleet
from sinkframe_plugins.smart_breaker import SmartBreakerMapper

from sinktest.paths import REPO

T0 = datetime(2026, 3, 2, tzinfo=timezone.utc)
TABLE = "smart_breaker_data"
COLUMNS = [c.name for c in SmartBreakerMapper.targets["measurements"].columns]
TRICKY_TEXT = 'a,"b"\nc\\d \t é ✓ \x01'  # CSV and JSON specials, a control character


@pytest.fixture
def breaker_db(pg_dsn):
    """smart_breaker_data with 3 hours of a 6-device fleet, some rows with awkward values, and a view
    shaped like the hourly continuous aggregate (plain PostgreSQL has no TimescaleDB)."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        apply_schema(conn, load_schema(REPO / "schema"), tables={TABLE}, plain_postgres=True)
        mapper = SmartBreakerMapper()
        rows = []
        fleet = Fleet(devices=6, seed=12, kinds=("smart_breaker",), sensor_share=0, late_rate=0,
                      out_of_order_rate=0)
        for offset, m in enumerate(fleet.history(T0.timestamp(), T0.timestamp() + 3 * 3600, 60)):
            record = KafkaRecord("iot.smart_breaker.enriched", 0, offset, None, m.key, decode_json_object(m.value))
            rows += [r.values for r in mapper.map(record) if r.role == "measurements"]
        rows.append((T0 + timedelta(minutes=90), "odd device \"1\"", *[None] * 12, TRICKY_TEXT, None,
                     psycopg.types.json.Jsonb({"note": TRICKY_TEXT, "nested": [1, {"x": None}]}),
                     "topic", 0, 999999))
        insert = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
            sql.Identifier(TABLE), sql.SQL(", ").join(map(sql.Identifier, COLUMNS)),
            sql.SQL(", ").join(sql.Placeholder() * len(COLUMNS)))
        with conn.cursor() as cur:
            cur.executemany(insert, rows)
        conn.execute("""CREATE VIEW smart_breaker_hourly_stats AS
            SELECT date_trunc('hour', time) AS bucket, device_id, avg(voltage_phase_a) AS avg_voltage_phase_a,
                   max(temperature) AS max_temperature, count(*) AS sample_count
            FROM smart_breaker_data GROUP BY 1, 2""")
    return pg_dsn


def export(dsn, **request) -> tuple[bytes, object]:
    out = io.BytesIO()
    result = export_to(Settings(dsn=dsn), ExportRequest(**request), out)
    return out.getvalue(), result


def expected(dsn, relation, time_column, since, until, device=None, as_text=False):
    with psycopg.connect(dsn) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        cols = [r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s ORDER BY ordinal_position",
            (relation,)).fetchall()]
        select = sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) if as_text else sql.Identifier(c)
                                    for c in cols)
        query = sql.SQL("SELECT {} FROM {} WHERE {t} >= %s AND {t} < %s").format(
            select, sql.Identifier(relation), t=sql.Identifier(time_column))
        params = [since, until]
        if device is not None:
            query += sql.SQL(" AND device_id = %s")
            params.append(device)
        return cols, conn.execute(query, params).fetchall()


def canonical(rows):
    return sorted(json.dumps(r, sort_keys=True, default=str) for r in rows)


@pytest.mark.parametrize("device", [None, "breaker-00003"])
def test_csv_export_is_exactly_the_rows_of_the_range(breaker_db, device):
    since, until = T0 + timedelta(hours=1), T0 + timedelta(hours=2)
    data, result = export(breaker_db, relation=TABLE, since=since, until=until, device_id=device, fmt="csv")
    header, *lines = list(csv.reader(io.StringIO(data.decode())))
    cols, rows = expected(breaker_db, TABLE, "time", since, until, device, as_text=True)
    assert header == cols and result.time_column == "time"
    assert len(lines) == result.rows == len(rows) > 0
    assert canonical(lines) == canonical([["" if v is None else v for v in row] for row in rows])
    if device is None:
        assert any(TRICKY_TEXT in line for line in lines)


def test_json_export_parses_back_to_the_same_values(breaker_db):
    since, until = T0 + timedelta(minutes=30), T0 + timedelta(minutes=150)
    data, result = export(breaker_db, relation=TABLE, since=since, until=until, fmt="json")
    exported = [json.loads(line) for line in data.decode().splitlines()]
    cols, rows = expected(breaker_db, TABLE, "time", since, until)
    assert len(exported) == result.rows == len(rows) > 0

    def typed(obj):
        return [datetime.fromisoformat(obj[c]) if isinstance(v, datetime) else obj[c]
                for c, v in zip(cols, rows[0])]

    by_offset = {row[cols.index("source_offset")]: list(row) for row in rows}
    assert {o["source_offset"]: typed(o) for o in exported} == by_offset
    odd = next(o for o in exported if o["breaker_status"] == TRICKY_TEXT)
    assert odd["extra_measurements"] == {"note": TRICKY_TEXT, "nested": [1, {"x": None}]}
    times = [o["time"] for o in exported]
    assert times == sorted(times)  # ordered by time


def test_aggregates_are_filtered_on_their_bucket(breaker_db):
    since, until = T0, T0 + timedelta(hours=2)
    data, result = export(breaker_db, relation="smart_breaker_hourly_stats", since=since, until=until, fmt="json")
    exported = [json.loads(line) for line in data.decode().splitlines()]
    assert result.time_column == "bucket"
    assert {o["bucket"] for o in exported} == {"2026-03-02T00:00:00+00:00", "2026-03-02T01:00:00+00:00"}
    _, rows = expected(breaker_db, "smart_breaker_hourly_stats", "bucket", since, until)
    assert len(exported) == len(rows)
    assert sum(o["sample_count"] for o in exported) == sum(r[-1] for r in rows)


def test_progress_counts_rows_as_they_stream(breaker_db, monkeypatch):
    import sinkframe.ops.export as export_module

    clock = iter(range(0, 10_000))  # every chunk looks a second after the previous one
    monkeypatch.setattr(export_module.time, "monotonic", lambda: float(next(clock)))
    stream, out = io.StringIO(), io.BytesIO()
    request = ExportRequest(TABLE, T0, T0 + timedelta(hours=3), fmt="json")
    result = export_to(Settings(dsn=breaker_db), request, out, progress=True, progress_stream=stream)
    assert f"exporting {TABLE}: " in stream.getvalue() and "rows (~" in stream.getvalue()
    assert stream.getvalue().endswith("\r\x1b[2K")  # the line is cleared at the end
    assert result.rows == len(out.getvalue().splitlines())


def test_export_refuses_what_it_cannot_do(breaker_db):
    window = {"since": T0, "until": T0 + timedelta(hours=1)}
    with pytest.raises(ConfigError, match="no table or view named 'nope'.*smart_breaker_data"):
        export(breaker_db, relation="nope", **window)
    with pytest.raises(ConfigError, match="no time column"):
        export(breaker_db, relation=TABLE, time_column="when", **window)
    with pytest.raises(ConfigError, match="must be before"):
        export(breaker_db, relation=TABLE, since=T0, until=T0)
    # A hostile device id is a value, never SQL.
    data, result = export(breaker_db, relation=TABLE, device_id="x' OR '1'='1", **window)
    assert result.rows == 0


def test_cli_writes_a_file_and_reports_on_stderr(breaker_db, tmp_path, monkeypatch):
    monkeypatch.setenv("SINKFRAME_DATABASE_URL", breaker_db)
    target = tmp_path / "out.json"
    result = CliRunner().invoke(cli, ["export", TABLE, "--since", "2026-03-02T01:00:00Z",
                                      "--until", "2026-03-02T01:30:00Z", "--device", "breaker-00001",
                                      "--format", "json", "-o", str(target)])
    assert result.exit_code == 0, result.output
    lines = target.read_text().splitlines()
    _, rows = expected(breaker_db, TABLE, "time", T0 + timedelta(hours=1), T0 + timedelta(minutes=90),
                       "breaker-00001")
    assert len(lines) == len(rows) > 20 and all(json.loads(x)["device_id"] == "breaker-00001" for x in lines)
    assert f"exported {len(rows)} rows" in result.stderr

    bad = CliRunner().invoke(cli, ["export", TABLE, "--since", "last tuesday"])
    assert bad.exit_code == 2 and "expected `now`, a duration ago" in bad.output
