"""Schema spec files: loading, interpolation and every kind of error (no database)."""
from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from sinkframe.errors import ConfigError
from sinkframe.schema import ddl, load_schema
from sinkframe.schema.planner import select_objects
from sinkframe.schema.spec import canonical_type, constraint_name, parse_duration

REPO = Path(__file__).resolve().parents[2]
SCHEMA_DIR = REPO / "schema"
BREAKER_STATS_COLUMNS = ["voltage_phase_a", "voltage_phase_b", "voltage_phase_c", "current_phase_a",
                         "current_phase_b", "current_phase_c", "temperature", "active_power"]

GOOD_TABLE = """
tables:
  readings:
    columns:
      - {name: time, type: timestamptz, nullable: false}
      - {name: device_id, type: text, nullable: false}
      - {name: value, type: double precision}
    hypertable:
      time_column: time
      chunk_time_interval: 1 day
      retention: {drop_after: 7 days}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems_of(paths, env=None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_schema(paths, env=env or {})
    return caught.value.problems


def test_shipped_device_metadata_is_a_keyed_plain_table():
    # The columns of every shipped table are in docs/tables.md, generated from the specs
    # (tests/cli/test_generated_docs.py); checked against the plugins by tests/schema/test_contract.py.
    spec = load_schema(SCHEMA_DIR, env={})
    assert spec.tables["device_metadata"].primary_key.columns == ("device_id",)
    assert spec.tables["device_metadata"].hypertable is None


def test_shipped_hypertables_have_seed_settings():
    spec = load_schema(SCHEMA_DIR, env={})
    for name in ("iot_raw_data", "iot_enriched_data", "smart_breaker_data"):
        table = spec.tables[name]
        hyper = table.hypertable
        assert (hyper.time_column, hyper.chunk_time_interval, hyper.drop_after) == ("time", "1 day", "30 days")
        assert hyper.compression.segment_by == ("device_id",)
        assert [str(c) for c in hyper.compression.order_by] == ["time DESC"]
        assert hyper.compression.compress_after == "1 hour"
        assert [[str(c) for c in ix.columns] for ix in table.indexes] == [["device_id", "time DESC"]]
        assert spec.tables[name].column("ingested_at").default == "now()"


def test_shipped_breaker_stats_columns():
    spec = load_schema(SCHEMA_DIR, env={})
    expected = ["bucket", "device_id"]
    for column in BREAKER_STATS_COLUMNS:
        expected += [f"avg_{column}", f"min_{column}", f"max_{column}"]
    expected.append("sample_count")
    for name, width in (("smart_breaker_hourly_stats", "1 hour"), ("smart_breaker_daily_stats", "1 day")):
        cagg = spec.continuous_aggregates[name]
        assert cagg.column_names == expected
        assert (cagg.source, cagg.bucket_width, cagg.time_column) == ("smart_breaker_data", width, "time")
        assert cagg.refresh is not None and not cagg.materialized_only
    for source in ("iot_raw", "iot_enriched"):
        for period, width in (("hourly", "1 hour"), ("daily", "1 day")):
            cagg = spec.continuous_aggregates[f"{source}_{period}_counts"]
            assert cagg.column_names == ["bucket", "device_id", "message_count"]
            assert (cagg.source, cagg.bucket_width) == (f"{source}_data", width)


def test_example_plugin_spec_loads_with_the_builtin_ones():
    spec = load_schema([SCHEMA_DIR, REPO / "examples" / "schema" / "env_sensor.yaml"], env={})
    table = spec.tables["env_sensor_data"]
    assert [c.name for c in table.columns] == [
        "time", "device_id", "temperature", "humidity", "battery", "source_topic", "source_partition",
        "source_offset", "ingested_at"]
    assert table.hypertable.time_column == "time"


def test_environment_overrides_durations():
    env = {"SINKFRAME_CHUNK_INTERVAL": "6 hours", "SINKFRAME_COMPRESS_AFTER": "2 days",
           "SINKFRAME_RETENTION": ""}  # empty -> the default, as with ${VAR:-default} in a shell
    hyper = load_schema(SCHEMA_DIR, env=env).tables["iot_raw_data"].hypertable
    assert hyper.chunk_time_interval == "6 hours"
    assert hyper.compression.compress_after == "2 days"
    assert hyper.drop_after == "30 days"


def test_missing_variable_without_default_names_file_and_path(tmp_path):
    path = write(tmp_path, "a.yaml", GOOD_TABLE.replace("chunk_time_interval: 1 day",
                                                        "chunk_time_interval: ${CHUNKS}"))
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:")
    assert "::$.tables.readings.hypertable.chunk_time_interval: " in problem
    assert "CHUNKS" in problem
    assert load_schema(path, env={"CHUNKS": "2 days"}).tables["readings"].hypertable.chunk_time_interval == "2 days"


@pytest.mark.parametrize("edit, path, message", [
    (("columns:", "colums:"), "$.tables.readings.colums", "unknown key 'colums' (did you mean 'columns'?)"),
    (("type: text", "type: 'text; drop table x'"), "$.tables.readings.columns[1].type", "does not match"),
    (("nullable: false}\n      - {name: device_id", "nullable: nope}\n      - {name: device_id"),
     "$.tables.readings.columns[0].nullable", "is not of type 'boolean'"),
    (("chunk_time_interval: 1 day", "chunk_time_interval: 1 fortnight"),
     "$.tables.readings.hypertable.chunk_time_interval", "is not a duration"),
    (("time_column: time", "time_column: device_id"), "$.tables.readings.hypertable.time_column",
     "must be timestamptz"),
    (("      retention:", "      primary_key: [time]\n      retention:"),
     "$.tables.readings.hypertable.primary_key", "unknown key 'primary_key'"),
])
def test_table_errors_name_file_and_key_path(tmp_path, edit, path, message):
    text = GOOD_TABLE.replace(*edit)
    file = write(tmp_path, "t.yaml", text)
    problems = problems_of(file)
    assert any(p.startswith(f"{file}:") and f"::{path}: " in p and message in p for p in problems), problems


def test_semantic_errors_are_all_reported_across_files(tmp_path):
    first = write(tmp_path, "a.yaml", GOOD_TABLE.replace(
        "    hypertable:", "    primary_key: [device_id]\n    indexes:\n      - columns: [nope DESC]\n"
                          "    hypertable:"))
    second = write(tmp_path, "b.yaml", """
tables:
  readings:
    columns: [{name: x, type: int}]
continuous_aggregates:
  readings_hourly:
    source: readings
    bucket_width: 1 hour
    group_by: [devise_id]
    aggregates:
      - {function: avg, column: value}
      - {function: sum}
      - {functions: [min, max], columns: [missing]}
    refresh: {start_offset: 30 days, end_offset: 1 hour, schedule_interval: 1 hour}
  not_a_hypertable:
    source: plain
    bucket_width: 1 hour
    aggregates: [{function: count}]
""")
    problems = problems_of(tmp_path)
    joined = "\n".join(problems)
    expected = [
        (first, "$.tables.readings.primary_key", "must include its partitioning column(s) time"),
        (first, "$.tables.readings.indexes[0].columns", "unknown column 'nope'"),
        (second, "$.tables.readings", "'readings' is already declared at"),
        (second, "$.continuous_aggregates.readings_hourly.group_by", "unknown column 'devise_id'"),
        (second, "$.continuous_aggregates.readings_hourly.aggregates[1]", "sum needs a column"),
        (second, "$.continuous_aggregates.readings_hourly.aggregates[2]", "unknown column 'missing'"),
        (second, "$.continuous_aggregates.readings_hourly.refresh.start_offset",
         "reaches beyond the retention window"),
        (second, "$.continuous_aggregates.not_a_hypertable.source", "is not a hypertable declared"),
    ]
    for file, path, message in expected:
        assert any(p.startswith(f"{file}:") and f"::{path}: " in p and message in p for p in problems), \
            f"{file} {path} {message} not in:\n{joined}"


def test_refresh_window_must_cover_two_buckets(tmp_path):
    file = write(tmp_path, "a.yaml", GOOD_TABLE + """
continuous_aggregates:
  readings_daily:
    source: readings
    bucket_width: 1 day
    aggregates: [{function: count, name: n}]
    refresh: {start_offset: 1 day, end_offset: 1 hour, schedule_interval: 1 hour}
""")
    [problem] = problems_of(file)
    assert "::$.continuous_aggregates.readings_daily.refresh.start_offset: " in problem
    assert "at least two buckets" in problem


def test_invalid_yaml_and_missing_paths(tmp_path):
    broken = write(tmp_path, "broken.yaml", "tables: [\n")
    [problem] = problems_of(broken)
    assert str(broken) in problem and "invalid YAML" in problem
    with pytest.raises(ConfigError, match="no such schema spec file or folder"):
        load_schema(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="no schema spec files"):
        load_schema(empty)


def test_aggregate_shorthand_and_default_names(tmp_path):
    file = write(tmp_path, "a.yaml", GOOD_TABLE + """
continuous_aggregates:
  readings_hourly:
    source: readings
    bucket_width: 1 hour
    bucket_column: hour
    group_by: [device_id]
    aggregates:
      - {functions: [avg, max], columns: [value]}
      - {function: last, column: value}
      - {function: count}
""")
    cagg = load_schema(file, env={}).continuous_aggregates["readings_hourly"]
    assert cagg.column_names == ["hour", "device_id", "avg_value", "max_value", "last_value", "count"]
    query = ddl.continuous_aggregate_query(cagg).as_string(None)
    assert 'last("value", "time") AS "last_value"' in query
    assert "count(*) AS \"count\"" in query
    assert 'time_bucket(\'1 hour\'::interval, "time") AS "hour"' in query


def test_select_objects_restricts_to_tables_and_their_dependents():
    spec = load_schema(SCHEMA_DIR, env={})
    tables, caggs = select_objects(spec, {"smart_breaker_data", "device_metadata"})
    assert set(tables) == {"smart_breaker_data", "device_metadata"}
    assert set(caggs) == {"smart_breaker_hourly_stats", "smart_breaker_daily_stats"}
    tables, caggs = select_objects(spec, {"iot_raw_daily_counts"})
    assert set(tables) == {"iot_raw_data"} and set(caggs) == {"iot_raw_daily_counts"}
    with pytest.raises(ConfigError, match="not declared in the schema specs: nope"):
        select_objects(spec, {"nope"})


@pytest.mark.parametrize("text, expected", [
    ("1 hour", timedelta(hours=1)), ("30 days", timedelta(days=30)), ("15 minutes", timedelta(minutes=15)),
    ("1 day 2 hours", timedelta(days=1, hours=2)), ("01:30:00", timedelta(hours=1, minutes=30)),
    ("2 weeks", timedelta(days=14)), ("1 month", timedelta(days=30)), ("90s", timedelta(seconds=90)),
    ("1 fortnight", None), ("hour", None), ("1 hour; drop table x", None), ("", None),
])
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("timestamptz", "timestamp with time zone"), ("TIMESTAMPTZ(3)", "timestamp(3) with time zone"),
    ("int", "integer"), ("int8", "bigint"), ("float8", "double precision"), ("varchar(20)",
     "character varying(20)"), ("numeric(10, 2)", "numeric(10,2)"), ("text[]", "text[]"), ("jsonb", "jsonb"),
])
def test_canonical_type_matches_format_type(text, expected):
    assert canonical_type(text) == expected


def test_default_names_fit_postgres_identifier_limit():
    name = constraint_name("a" * 40, "b" * 40, "idx")
    assert len(name) == 63 and name.endswith("_idx")
    assert constraint_name("t", "device_id", "time", "idx") == "t_device_id_time_idx"


def test_spec_schema_is_valid_json_schema():
    import jsonschema

    from sinkframe.schema.spec import SPEC_SCHEMA

    jsonschema.Draft202012Validator.check_schema(SPEC_SCHEMA)


def test_yaml_examples_in_docs_load(tmp_path):
    text = (REPO / "docs" / "schema.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    assert blocks
    for i, block in enumerate(blocks):
        spec = load_schema(write(tmp_path, f"doc{i}.yaml", block), env={})
        assert spec.object_names()
    cagg = spec.continuous_aggregates["readings_hourly"]
    assert cagg.column_names == ["bucket", "device_id", "avg_value", "min_value", "max_value", "latest",
                                 "sample_count"]
