"""Settings from the environment: the seed deployment's variables and the SINKFRAME_* ones."""
from __future__ import annotations

import os
import sys
from dataclasses import fields
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from sinkframe.config.settings import (DB_SETTING_NAMES, SETTING, SETTINGS, Settings, read_setting, redact_dsn,
                                redact_error)
from sinkframe.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_seed_deployment_variables_keep_working():
    s = Settings.from_env({"REDPANDA_BROKERS": "redpanda:9092", "TIMESCALEDB_HOST": "tsdb", "TIMESCALEDB_PORT": "5433",
                           "TIMESCALEDB_DB": "iot", "TIMESCALEDB_USER": "writer", "TIMESCALEDB_PASSWORD": "pw"})
    assert s.kafka["bootstrap.servers"] == "redpanda:9092"
    params = conninfo_to_dict(s.dsn)
    assert {k: params[k] for k in ("host", "port", "dbname", "user", "password")} == {
        "host": "tsdb", "port": "5433", "dbname": "iot", "user": "writer", "password": "pw"}


def test_any_librdkafka_property_from_env():
    s = Settings.from_env({"SINKFRAME_KAFKA_SESSION_TIMEOUT_MS": "6000",
                           "SINKFRAME_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                           "SINKFRAME_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512"})
    assert s.kafka["session.timeout.ms"] == "6000"
    assert s.kafka["security.protocol"] == "SASL_SSL"
    assert s.kafka["sasl.mechanism"] == "SCRAM-SHA-512"


def test_libpq_parameters_and_database_url():
    s = Settings.from_env({"SINKFRAME_DATABASE_URL": "postgresql://u:secret@db:6543/telemetry",
                           "SINKFRAME_DB_SSLMODE": "verify-full", "SINKFRAME_DB_SSLROOTCERT": "/certs/ca.pem",
                           "SINKFRAME_DB_POOL_SIZE": "7"})
    params = conninfo_to_dict(s.dsn)
    assert (params["host"], params["port"], params["dbname"], params["sslmode"], params["sslrootcert"]) == (
        "db", "6543", "telemetry", "verify-full", "/certs/ca.pem")
    assert "pool_size" not in params and s.pool_size == 7
    assert "secret" not in s.redacted_dsn and "***" in s.redacted_dsn


@pytest.mark.parametrize("env, message", [
    ({"SINKFRAME_DB_POOL_SIZE": "0"}, "SINKFRAME_DB_POOL_SIZE='0': expected a whole number >= 1"),
    ({"SINKFRAME_WRITE_METHOD": "bulk"}, "SINKFRAME_WRITE_METHOD='bulk': expected one of copy, insert"),
    ({"SINKFRAME_THREAD_SWITCH_INTERVAL_MS": "0"},
     "SINKFRAME_THREAD_SWITCH_INTERVAL_MS='0': expected a number of milliseconds > 0"),
    ({"SINKFRAME_STALL_AFTER": "soon"}, "SINKFRAME_STALL_AFTER='soon': expected a number of seconds > 0"),
])
def test_bad_settings_are_named(env, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Settings.from_env(env)


def test_flags_and_overrides():
    s = Settings.from_env({"SINKFRAME_PLAIN_POSTGRES": "1", "SINKFRAME_WRITE_METHOD": "INSERT"})
    assert s.plain_postgres and s.write_method == "insert"
    o = s.with_overrides(brokers="b:1", database_url="host=x dbname=y", plain_postgres=None)
    assert o.kafka["bootstrap.servers"] == "b:1" and o.plain_postgres
    assert {k: v for k, v in conninfo_to_dict(o.dsn).items() if k in ("host", "dbname")} == {
        "host": "x", "dbname": "y"}


TIMEOUT_DEFAULTS = {"connect_timeout": "10", "keepalives": "1", "keepalives_idle": "10",
                    "keepalives_interval": "5", "keepalives_count": "3", "tcp_user_timeout": "20000"}


@pytest.mark.parametrize("env", [
    {},
    {"SINKFRAME_DATABASE_URL": "postgresql://u@db/telemetry?sslmode=require"},
    {"TIMESCALEDB_HOST": "tsdb", "TIMESCALEDB_PASSWORD": "pw"},
])
def test_every_dsn_gets_client_side_timeouts_by_default(env):
    s = Settings.from_env(env)
    assert TIMEOUT_DEFAULTS.items() <= conninfo_to_dict(s.dsn).items()
    # However the DSN comes: --database-url, or a Settings made in code.
    assert TIMEOUT_DEFAULTS.items() <= conninfo_to_dict(s.with_overrides(database_url="host=x").dsn).items()
    assert TIMEOUT_DEFAULTS.items() <= conninfo_to_dict(Settings(dsn="host=y").dsn).items()


def test_a_timeout_the_user_gives_wins_over_ours():
    s = Settings.from_env({"SINKFRAME_DATABASE_URL": "postgresql://db/t?keepalives_idle=60&tcp_user_timeout=0",
                           "SINKFRAME_DB_KEEPALIVES_COUNT": "9", "SINKFRAME_DB_CONNECT_TIMEOUT": "3"})
    params = conninfo_to_dict(s.dsn)
    assert (params["keepalives_idle"], params["tcp_user_timeout"], params["keepalives_count"],
            params["connect_timeout"], params["keepalives_interval"]) == ("60", "0", "9", "3", "5")
    # A variable carries over to a DSN given on the command line, where that DSN is silent.
    o = s.with_overrides(database_url="host=x keepalives_idle=30")
    assert (conninfo_to_dict(o.dsn)["keepalives_count"], conninfo_to_dict(o.dsn)["keepalives_idle"]) == ("9", "30")


def test_a_bad_timeout_is_named():
    with pytest.raises(ConfigError, match="SINKFRAME_DB_KEEPALIVES_IDLE='soon': expected a whole number >= 1"):
        Settings.from_env({"SINKFRAME_DB_KEEPALIVES_IDLE": "soon"})


def test_redact_dsn_hides_password_only():
    redacted = redact_dsn("host=h password=hunter2 user=u")
    assert "hunter2" not in redacted
    assert conninfo_to_dict(redacted) == {"host": "h", "password": "***", "user": "u"}


def test_redact_error_masks_the_dsn_password_in_driver_text():
    err = RuntimeError('connection failed: password "hunter2" rejected\n')
    assert redact_error(err, "host=h password=hunter2") == 'connection failed: password "***" rejected'
    assert redact_error(err, "not a dsn ===") == 'connection failed: password "hunter2" rejected'


@pytest.mark.parametrize("raw, value", [(None, 5), ("0", 0), ("12", 12), ("off", None), ("never", None), ("", None)])
def test_prepare_threshold(raw, value):
    env = {} if raw is None else {"SINKFRAME_DB_PREPARE_THRESHOLD": raw}
    assert Settings.from_env(env).prepare_threshold == value


def test_a_bad_prepare_threshold_is_named():
    with pytest.raises(ConfigError, match="SINKFRAME_DB_PREPARE_THRESHOLD='sometimes': expected a whole number "
                                          "or 'off'"):
        Settings.from_env({"SINKFRAME_DB_PREPARE_THRESHOLD": "sometimes"})


def test_every_settings_attribute_is_declared_once_with_its_default():
    declared = {s.name: s for s in SETTINGS if s.goes_to == "settings"}
    assert {f.name for f in fields(Settings)} - {"kafka", "dsn", "connection_defaults"} == set(declared)
    assert all(getattr(Settings(), name) == setting.default for name, setting in declared.items())
    assert all(getattr(Settings.from_env({}), name) == setting.default for name, setting in declared.items())
    assert len({s.env for s in SETTINGS}) == len(SETTINGS)
    assert DB_SETTING_NAMES == {"POOL_SIZE", "PREPARE_THRESHOLD"}


def test_defaults_and_blank_values():
    s = Settings.from_env({"SINKFRAME_DB_POOL_SIZE": "", "SINKFRAME_WRITE_METHOD": " ", "REDPANDA_BROKERS": ""})
    assert (s.pool_size, s.write_method, s.kafka["bootstrap.servers"]) == (4, "copy", "localhost:9092")
    assert Settings.from_env({"SINKFRAME_APPLY_SCHEMA": "0"}).apply_schema is False
    assert Settings.from_env({"SINKFRAME_KAFKA_BOOTSTRAP_SERVERS": "k:1", "REDPANDA_BROKERS": "r:1"}) \
        .kafka["bootstrap.servers"] == "k:1"
    assert Settings.from_env({"SINKFRAME_PROGRESS_INTERVAL": "2.5"}).progress_interval == 2.5
    assert read_setting("log_level", {"SINKFRAME_LOG_LEVEL": "debug"}) == "DEBUG"


def test_cli_options_come_from_the_declaration(monkeypatch):
    from click.testing import CliRunner

    from sinkframe.cli import cli

    help_text = " ".join(CliRunner().invoke(cli, ["run", "--help"]).output.split())
    for name in ("plugins_dirs", "brokers", "database_url", "schema_dir", "apply_schema", "plain_postgres",
                 "metrics_port"):
        setting = SETTING[name]
        assert f"{setting.option} " in help_text and f"[env: {setting.env}" in help_text, name
    assert "--schema-dir PATH" in help_text and "default: schema]" in help_text
    monkeypatch.setenv("SINKFRAME_PLUGINS_DIRS", f"/nowhere{os.pathsep}{REPO / 'examples' / 'plugins'}")
    listed = CliRunner().invoke(cli, ["plugins"])
    assert "env_sensor" in listed.output and "--plugins-dir /nowhere: not a directory" in listed.output
    bad_port = CliRunner().invoke(cli, ["run", "c.yaml"], env={"SINKFRAME_METRICS_PORT": "lots"})
    assert bad_port.exit_code == 2 and "expected a port number" in bad_port.output


def test_the_thread_switch_interval_is_read_in_milliseconds_and_applied_to_the_process():
    from sinkframe.pipeline.runner import tune_thread_switching

    assert Settings.from_env({}).thread_switch_interval == 0.5
    interval = Settings.from_env({"SINKFRAME_THREAD_SWITCH_INTERVAL_MS": "2"}).thread_switch_interval
    before = sys.getswitchinterval()
    try:
        tune_thread_switching(interval)
        assert sys.getswitchinterval() == pytest.approx(0.002)
    finally:
        sys.setswitchinterval(before)
