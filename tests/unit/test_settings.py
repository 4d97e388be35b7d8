"""Settings from the environment: the seed deployment's variables and the SINKFRAME_* ones."""
from __future__ import annotations

import pytest
from psycopg.conninfo import conninfo_to_dict

from sinkframe.errors import ConfigError
from sinkframe.settings import Settings, redact_dsn, redact_error


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
])
def test_bad_settings_are_named(env, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Settings.from_env(env)


def test_flags_and_overrides():
    s = Settings.from_env({"SINKFRAME_PLAIN_POSTGRES": "1", "SINKFRAME_WRITE_METHOD": "INSERT"})
    assert s.plain_postgres and s.write_method == "insert"
    o = s.with_overrides(brokers="b:1", database_url="host=x dbname=y", plain_postgres=None)
    assert o.kafka["bootstrap.servers"] == "b:1" and o.dsn == "host=x dbname=y" and o.plain_postgres


def test_redact_dsn_hides_password_only():
    redacted = redact_dsn("host=h password=hunter2 user=u")
    assert "hunter2" not in redacted
    assert conninfo_to_dict(redacted) == {"host": "h", "password": "***", "user": "u"}


def test_redact_error_masks_the_dsn_password_in_driver_text():
    err = RuntimeError('connection failed: password "hunter2" rejected\n')
    assert redact_error(err, "host=h password=hunter2") == 'connection failed: password "***" rejected'
    assert redact_error(err, "not a dsn ===") == 'connection failed: password "hunter2" rejected'
