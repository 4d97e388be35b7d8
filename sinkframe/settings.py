"""Process-wide settings: where the broker and the database are, and how to use them.

Connection settings live here, once, not in every connector file. They come from
the environment (the seed deployment's variables keep working) and can be
overridden once on the command line.

Broker: `REDPANDA_BROKERS` (or `SINKFRAME_KAFKA_BOOTSTRAP_SERVERS`), and any
librdkafka property as `SINKFRAME_KAFKA_<PROPERTY>`, upper case with dots as
underscores (`SINKFRAME_KAFKA_SESSION_TIMEOUT_MS=6000` -> `session.timeout.ms`),
the convention of Confluent's container images.

Database: `SINKFRAME_DATABASE_URL` (a libpq URL or key=value string), else
`TIMESCALEDB_HOST/PORT/DB/USER/PASSWORD`; any libpq parameter as
`SINKFRAME_DB_<PARAM>` (`SINKFRAME_DB_SSLMODE=verify-full`,
`SINKFRAME_DB_SSLROOTCERT=/certs/ca.pem`). libpq's own `PG*` variables work too.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Mapping

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from sinkframe.errors import ConfigError

KAFKA_ENV_PREFIX = "SINKFRAME_KAFKA_"
DB_ENV_PREFIX = "SINKFRAME_DB_"
# SINKFRAME_DB_* names that are sinkframe settings, not libpq parameters.
DB_SETTING_NAMES = {"POOL_SIZE", "PREPARE_THRESHOLD"}
WRITE_METHODS = ("copy", "insert")
TRUE_WORDS = {"1", "true", "yes", "on"}


def kafka_property_from_env_name(name: str) -> str:
    """`SINKFRAME_KAFKA_SESSION_TIMEOUT_MS` -> `session.timeout.ms`."""
    return name[len(KAFKA_ENV_PREFIX):].lower().replace("_", ".")


@dataclass(frozen=True)
class Settings:
    kafka: Mapping[str, str] = field(default_factory=dict)
    dsn: str = ""
    pool_size: int = 4
    write_method: str = "copy"
    plain_postgres: bool = False
    schema_dir: str = "schema"
    apply_schema: bool = True
    # psycopg prepares a statement after this many executions; None: never. Off for
    # servers/proxies that do not keep prepared statements per connection (PgBouncer
    # in transaction mode, the embedded engine whose connections share one session).
    prepare_threshold: int | None = 5

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        return cls(
            kafka=kafka_settings_from_env(env),
            dsn=database_dsn_from_env(env),
            pool_size=_positive_int(env, "SINKFRAME_DB_POOL_SIZE", 4),
            write_method=_choice(env, "SINKFRAME_WRITE_METHOD", WRITE_METHODS, "copy"),
            plain_postgres=env.get("SINKFRAME_PLAIN_POSTGRES", "").strip().lower() in TRUE_WORDS,
            schema_dir=env.get("SINKFRAME_SCHEMA_DIR", "schema"),
            apply_schema=env.get("SINKFRAME_APPLY_SCHEMA", "1").strip().lower() in TRUE_WORDS,
            prepare_threshold=_prepare_threshold(env),
        )

    def with_overrides(self, *, brokers: str | None = None, database_url: str | None = None,
                       **others) -> "Settings":
        """Apply command-line overrides; None means 'not given'."""
        changes = {k: v for k, v in others.items() if v is not None}
        if brokers:
            changes["kafka"] = {**self.kafka, "bootstrap.servers": brokers}
        if database_url:
            changes["dsn"] = database_url
        return replace(self, **changes)

    @property
    def schema_paths(self) -> list[str]:
        """Schema spec folders/files: SINKFRAME_SCHEMA_DIR may list several, ':'-separated."""
        return [p for p in self.schema_dir.split(os.pathsep) if p]

    @property
    def redacted_dsn(self) -> str:
        return redact_dsn(self.dsn)


def kafka_settings_from_env(env: Mapping[str, str]) -> dict[str, str]:
    props = {"bootstrap.servers": env.get("REDPANDA_BROKERS") or "localhost:9092"}
    for name, value in env.items():
        if name.startswith(KAFKA_ENV_PREFIX) and len(name) > len(KAFKA_ENV_PREFIX):
            props[kafka_property_from_env_name(name)] = value
    return props


def database_dsn_from_env(env: Mapping[str, str]) -> str:
    base = env.get("SINKFRAME_DATABASE_URL")
    params: dict[str, str] = {}
    if not base:
        params = {
            "host": env.get("TIMESCALEDB_HOST", "localhost"),
            "port": env.get("TIMESCALEDB_PORT", "5432"),
            "dbname": env.get("TIMESCALEDB_DB", "iot_data"),
            "user": env.get("TIMESCALEDB_USER", "postgres"),
        }
        if env.get("TIMESCALEDB_PASSWORD"):
            params["password"] = env["TIMESCALEDB_PASSWORD"]
    for name, value in env.items():
        if name.startswith(DB_ENV_PREFIX) and name[len(DB_ENV_PREFIX):] not in DB_SETTING_NAMES:
            params[name[len(DB_ENV_PREFIX):].lower()] = value
    params.setdefault("application_name", "sinkframe")
    try:
        return make_conninfo(base or "", **params)
    except Exception as err:  # psycopg.ProgrammingError on a malformed DSN
        raise ConfigError(f"SINKFRAME_DATABASE_URL / SINKFRAME_DB_*: invalid connection string: "
                          f"{redact_text(str(err), params.get('password'))}") from None


def redact_dsn(dsn: str) -> str:
    """The DSN with any password replaced by '***', safe to log."""
    try:
        params = conninfo_to_dict(dsn)
    except Exception:
        return "<unparseable connection string>"
    if params.get("password"):
        params["password"] = "***"
    return make_conninfo("", **{k: v for k, v in params.items() if v is not None})


def redact_error(err: BaseException, dsn: str) -> str:
    """A driver error's text with the DSN's password (if any) masked: libpq may echo it."""
    try:
        password = conninfo_to_dict(dsn).get("password")
    except Exception:  # an unparseable DSN: nothing to mask from it
        password = None
    return redact_text(str(err).strip(), password)


def redact_text(text: str, *secrets: str | None) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{name}={raw!r}: expected a whole number >= 1")
    return value


def _prepare_threshold(env: Mapping[str, str]) -> int | None:
    raw = env.get("SINKFRAME_DB_PREPARE_THRESHOLD", "5").strip().lower()
    if raw in ("", "none", "off", "never"):
        return None
    try:
        return max(0, int(raw))
    except ValueError:
        raise ConfigError(f"SINKFRAME_DB_PREPARE_THRESHOLD={raw!r}: expected a whole number or 'off'") from None


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    value = env.get(name, default).strip().lower() or default
    if value not in choices:
        raise ConfigError(f"{name}={value!r}: expected one of {', '.join(choices)}")
    return value
