"""`sinkframe schema plan|apply` through click's CliRunner, against plain PostgreSQL.

(The TimescaleDB path of the same commands runs in test_timescale.py.)
"""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from sinkframe.cli.schema import schema_group
from sinkframe_plugins import shipped_specs

REPO = Path(__file__).resolve().parents[2]
SCHEMA_DIR = str(REPO / "schema")


def invoke(*args: str, env: dict | None = None):
    env = {"SINKFRAME_PLAIN_POSTGRES": None, "SINKFRAME_DATABASE_URL": None, **(env or {})}
    return CliRunner().invoke(schema_group, list(args), env=env)


def test_plan_without_timescaledb_or_opt_in_fails_clearly(pg_dsn):
    result = invoke("plan", SCHEMA_DIR, "--database-url", pg_dsn)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "error: the timescaledb extension is not installed" in result.stderr
    assert "--plain-postgres" in result.stderr


def test_plan_apply_plan_with_plain_postgres_flag(pg_dsn):
    first = invoke("plan", SCHEMA_DIR, "--database-url", pg_dsn, "--plain-postgres", "--detailed-exitcode")
    assert first.exit_code == 2, first.output
    assert 'CREATE TABLE IF NOT EXISTS "smart_breaker_data"' in first.stdout
    assert "create_hypertable" not in first.stdout
    assert "skipped: hypertable smart_breaker_data" in first.stderr
    assert "skipped: continuous aggregate smart_breaker_daily_stats" in first.stderr

    applied = invoke("apply", SCHEMA_DIR, "--database-url", pg_dsn, "--plain-postgres")
    assert applied.exit_code == 0, applied.output
    assert "applied: create table device_metadata" in applied.stdout

    second = invoke("plan", SCHEMA_DIR, "--database-url", pg_dsn, "--detailed-exitcode",
                    env={"SINKFRAME_PLAIN_POSTGRES": "1"})
    assert second.exit_code == 0, second.output
    assert second.stdout == ""
    assert "nothing to apply" in second.stderr

    again = invoke("apply", SCHEMA_DIR, "--database-url", pg_dsn, "--plain-postgres")
    assert again.exit_code == 0 and again.stdout == ""
    assert "already up to date" in again.stderr


def test_table_option_restricts_the_plan(pg_dsn):
    result = invoke("plan", SCHEMA_DIR, "--database-url", pg_dsn, "--plain-postgres",
                    "--table", "device_metadata", "--table", "iot_raw_data")
    assert result.exit_code == 0, result.output
    assert '"device_metadata"' in result.stdout and '"iot_raw_data"' in result.stdout
    assert "smart_breaker" not in result.stdout + result.stderr
    unknown = invoke("plan", SCHEMA_DIR, "--database-url", pg_dsn, "--table", "nope")
    assert unknown.exit_code == 1
    assert "not declared in the schema specs: nope" in unknown.stderr


def test_database_from_environment_and_password_never_printed(pg_dsn):
    params = conninfo_to_dict(pg_dsn)
    params["password"] = "s3cret-pw"  # the local server trusts us; the password is just carried along
    dsn = make_conninfo("", **params)
    result = invoke("plan", SCHEMA_DIR, "--plain-postgres", env={"SINKFRAME_DATABASE_URL": dsn})
    assert result.exit_code == 0, result.output
    assert "s3cret-pw" not in result.output and "password=***" in result.stderr

    params["port"] = "1"  # nothing listens there
    failed = invoke("apply", SCHEMA_DIR, "--database-url", make_conninfo("", **params))
    assert failed.exit_code == 1
    assert "cannot connect to" in failed.stderr
    assert "s3cret-pw" not in failed.output and "password=***" in failed.stderr


def test_spec_errors_are_listed_with_file_and_path(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("tables:\n  t:\n    columns: [{name: x, type: int, nulable: true}]\n"
                   "continuous_aggregates:\n  c: {source: t, bucket_width: 1 hour, aggregates: []}\n")
    result = invoke("plan", str(bad), "--database-url", "host=127.0.0.1 port=1")
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert any(f"{bad}:3::$.tables.t.columns[0].nulable: unknown key 'nulable'" in line for line in lines)
    assert any("::$.continuous_aggregates.c.aggregates: " in line for line in lines)


@pytest.mark.parametrize("command", ["plan", "apply"])
def test_missing_schema_path_is_a_usage_error(command, tmp_path):
    result = invoke(command, str(tmp_path / "nope"))
    assert result.exit_code == 2
    assert "does not exist" in result.output


# --- where the specs come from -----------------------------------------------------------------

def test_without_a_schema_folder_plan_uses_the_plugins_specs_and_says_so(pg_dsn, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an empty folder: no ./schema
    result = invoke("plan", "--database-url", pg_dsn, "--plain-postgres", env={"SINKFRAME_SCHEMA_DIR": None})
    assert result.exit_code == 0, result.output
    for table in ("iot_raw_data", "iot_enriched_data", "smart_breaker_data", "device_metadata"):
        assert f'CREATE TABLE IF NOT EXISTS "{table}"' in result.stdout
    [shipped] = shipped_specs("iot_raw.yaml")
    assert f"spec: iot_raw_data <- {shipped}:5 (shipped with plugin raw)" in result.stderr
    assert "spec: device_metadata <- " in result.stderr
    assert "(shipped with plugins enriched, smart_breaker)" in result.stderr


def test_the_projects_spec_of_a_table_wins_over_the_plugins(pg_dsn, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "schema").mkdir()
    (tmp_path / "schema" / "raw.yaml").write_text(
        "tables:\n  iot_raw_data:\n    columns:\n      - {name: time, type: timestamptz, nullable: false}\n"
        "      - {name: device_id, type: text, nullable: false}\n      - {name: site, type: text}\n")
    result = invoke("plan", "--database-url", pg_dsn, "--plain-postgres", env={"SINKFRAME_SCHEMA_DIR": None})
    assert result.exit_code == 0, result.output
    assert f"spec: iot_raw_data <- {Path('schema') / 'raw.yaml'}:2\n" in result.stderr
    assert '"site" text' in result.stdout and '"mqtt_topic"' not in result.stdout
    assert "spec: smart_breaker_data <- " in result.stderr and "(shipped with plugin smart_breaker)" in result.stderr
    # The plugin's aggregates of iot_raw_data were written for its columns: the project owns that table now.
    assert "spec: not used: continuous aggregate iot_raw_hourly_counts (shipped with plugin raw): its source " \
           "table iot_raw_data is declared by the project's specs" in result.stderr
    assert "iot_raw_hourly_counts" not in result.stdout


def test_apply_from_an_empty_folder_then_plan_is_up_to_date(pg_dsn, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = {"SINKFRAME_SCHEMA_DIR": None}
    applied = invoke("apply", "--database-url", pg_dsn, "--plain-postgres", env=env)
    assert applied.exit_code == 0, applied.output
    assert "applied: create table smart_breaker_data" in applied.stdout
    again = invoke("plan", "--database-url", pg_dsn, "--plain-postgres", "--detailed-exitcode", env=env)
    assert again.exit_code == 0 and again.stdout == "", again.output
