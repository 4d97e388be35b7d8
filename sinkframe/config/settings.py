"""Process-wide settings: where the broker and the database are, and how to use them.

Every setting is declared once, in `SETTINGS`: its name, environment variable,
CLI option (where it has one), default, description and how its text is parsed.
`Settings.from_env` parses from it, the commands build their options from it
(`setting_option`), and the README's settings table is generated from it
(`settings_table`). Connection settings live here, once, not in every connector
file; the seed deployment's variables keep working.

Broker: `REDPANDA_BROKERS`, and any librdkafka property as `SINKFRAME_KAFKA_<PROPERTY>`,
upper case with dots as underscores (`SINKFRAME_KAFKA_SESSION_TIMEOUT_MS=6000` ->
`session.timeout.ms`), the convention of Confluent's container images.

Database: `SINKFRAME_DATABASE_URL` (a libpq URL or key=value string), else
`TIMESCALEDB_HOST/PORT/DB/USER/PASSWORD`; any libpq parameter as `SINKFRAME_DB_<PARAM>`
(`SINKFRAME_DB_SSLMODE=verify-full`). libpq's own `PG*` variables work too.

Every connection the sink and its commands open gets client-side timeouts
(TCP keepalives, `tcp_user_timeout`, `connect_timeout`) unless the DSN says
otherwise: a database that vanishes without a FIN or RST (a partition, a
failover) would otherwise leave a send or receive waiting forever. They are
declared below like any setting, and added to the DSN as defaults, so a
parameter the user's DSN gives wins (`Settings.dsn` always carries them).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping

import click
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from sinkframe.errors import ConfigError

KAFKA_ENV_PREFIX = "SINKFRAME_KAFKA_"
DB_ENV_PREFIX = "SINKFRAME_DB_"
TRUE_WORDS = {"1", "true", "yes", "on"}


# --- how a setting's text becomes a value: each raises ValueError saying what it expected ----

def as_text(raw: str) -> str:
    return raw


def as_flag(raw: str) -> bool:
    return raw.strip().lower() in TRUE_WORDS


def positive_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError("expected a whole number >= 1")
    return value


def port_number(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise ValueError("expected a port number (0: off)")
    return value


def whole_number(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError("expected a whole number >= 0")
    return value


def positive_number(unit: str) -> Callable[[str], float]:
    """A parser of numbers > 0 whose error names `unit`."""
    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            value = 0.0
        if not value > 0:
            raise ValueError(f"expected a number of {unit} > 0")
        return value

    return parse


positive_seconds = positive_number("seconds")
positive_milliseconds = positive_number("milliseconds")


def seconds_or_off(raw: str) -> float | None:
    if raw.strip().lower() in ("", "none", "off", "never"):
        return None
    return positive_seconds(raw)


def count_or_off(raw: str) -> int | None:
    word = raw.strip().lower()
    if word in ("", "none", "off", "never"):
        return None
    try:
        return max(0, int(word))
    except ValueError:
        raise ValueError("expected a whole number or 'off'") from None


def interval_or_off(raw: str) -> str | None:
    """A PostgreSQL interval as text (`90 days`, `12 hours`), checked; None for `off`."""
    from sinkframe.schema.spec import parse_duration  # the specs' own reading of a duration

    text = " ".join(raw.split())
    if text.lower() in ("off", "none", "never"):
        return None
    duration = parse_duration(text)
    if duration is None or duration.total_seconds() <= 0:
        raise ValueError("expected an interval such as '90 days' or '12 hours', or 'off'")
    return text


def one_of(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        by_folded = {c.lower(): c for c in choices}
        try:
            return by_folded[raw.strip().lower()]
        except KeyError:
            raise ValueError(f"expected one of {', '.join(choices)}") from None

    parse.choices = choices  # for the CLI option's help and README
    return parse


# --- the declaration --------------------------------------------------------------------------

@dataclass(frozen=True)
class Setting:
    """One setting: where its value comes from, what it means, and how its text is read.

    `goes_to` says who reads it: "settings" (the `Settings` attribute `name`),
    "kafka" or "dsn" (one part of `Settings.kafka` / `Settings.dsn`), or "command"
    (the option of the commands that take it; click reads the variable).
    """

    name: str
    env: str  # the variable; `<...>` marks a family (SINKFRAME_DB_<PARAM>)
    description: str
    default: Any = None
    parse: Callable[[str], Any] = as_text
    option: str | None = None  # e.g. "--database-url"
    option_value: Any = None  # for a switch (--no-schema): the value it sets
    repeatable: bool = False  # the option may repeat; the variable is ':'-separated
    goes_to: str = "settings"
    blank_is_default: bool = True  # `VAR=` counts as unset (else its empty text is parsed)
    default_text: str | None = None  # the default as the README shows it
    metavar: str = "TEXT"  # what the option's value looks like in --help
    option_help: str | None = None  # when the option says it differently (--no-schema)

    def read(self, env: Mapping[str, str]) -> Any:
        """The value in `env`, parsed; ConfigError naming the variable when it cannot be."""
        raw = env.get(self.env)
        if raw is None or (self.blank_is_default and not raw.strip()):
            return self.default
        return self.from_text(raw, self.env)

    def from_text(self, raw: str, where: str) -> Any:
        try:
            return self.parse(raw)
        except ValueError as err:
            raise ConfigError(f"{where}={raw!r}: {err}") from None

    @property
    def is_family(self) -> bool:
        return "<" in self.env

    @property
    def shown_default(self) -> str:
        if self.default_text is not None:
            return self.default_text
        if self.default is None or self.default == ():
            return ""
        if isinstance(self.default, bool):
            return "on" if self.default else "off"
        return f"`{self.default}`"


SETTINGS: tuple[Setting, ...] = (
    Setting("brokers", "REDPANDA_BROKERS", "Kafka bootstrap servers", "localhost:9092",
            option="--brokers", goes_to="kafka", metavar="HOST:PORT,..."),
    Setting("kafka_properties", "SINKFRAME_KAFKA_<PROPERTY>",
            "any librdkafka property, dots as underscores: `SINKFRAME_KAFKA_SESSION_TIMEOUT_MS=6000` -> "
            "`session.timeout.ms` (`SINKFRAME_KAFKA_BOOTSTRAP_SERVERS` wins over `REDPANDA_BROKERS`)",
            goes_to="kafka"),
    Setting("database_url", "SINKFRAME_DATABASE_URL",
            "the database as a libpq URL or key=value DSN (instead of `TIMESCALEDB_*`)",
            option="--database-url", goes_to="dsn", metavar="URL"),
    Setting("database_host", "TIMESCALEDB_HOST", "database host", "localhost", goes_to="dsn",
            blank_is_default=False),
    Setting("database_port", "TIMESCALEDB_PORT", "database port", "5432", goes_to="dsn", blank_is_default=False),
    Setting("database_name", "TIMESCALEDB_DB", "database name", "iot_data", goes_to="dsn", blank_is_default=False),
    Setting("database_user", "TIMESCALEDB_USER", "database role", "postgres", goes_to="dsn",
            blank_is_default=False),
    Setting("database_password", "TIMESCALEDB_PASSWORD", "its password (never logged)", goes_to="dsn"),
    Setting("database_params", "SINKFRAME_DB_<PARAM>",
            "any libpq parameter, e.g. `SINKFRAME_DB_SSLMODE=verify-full`, `SINKFRAME_DB_SSLROOTCERT=/ca.pem`",
            goes_to="dsn"),
    # Connection defaults (goes_to "dsn", named SINKFRAME_DB_<libpq parameter>): see the module's docstring.
    Setting("database_connect_timeout", "SINKFRAME_DB_CONNECT_TIMEOUT",
            "seconds a connection attempt may take (libpq `connect_timeout`)", 10, parse=positive_int,
            goes_to="dsn"),
    Setting("database_keepalives", "SINKFRAME_DB_KEEPALIVES",
            "TCP keepalives on database connections (libpq `keepalives`; `0`: off)", 1, parse=whole_number,
            goes_to="dsn"),
    Setting("database_keepalives_idle", "SINKFRAME_DB_KEEPALIVES_IDLE",
            "seconds a connection is idle before the first keepalive probe", 10, parse=positive_int,
            goes_to="dsn"),
    Setting("database_keepalives_interval", "SINKFRAME_DB_KEEPALIVES_INTERVAL",
            "seconds between keepalive probes", 5, parse=positive_int, goes_to="dsn"),
    Setting("database_keepalives_count", "SINKFRAME_DB_KEEPALIVES_COUNT",
            "keepalive probes lost before the connection counts as dead", 3, parse=positive_int, goes_to="dsn"),
    Setting("database_tcp_user_timeout", "SINKFRAME_DB_TCP_USER_TIMEOUT",
            "milliseconds sent data may stay unacknowledged before the connection counts as dead (libpq "
            "`tcp_user_timeout`, Linux; `0`: the system's default)", 20000, parse=whole_number, goes_to="dsn"),
    Setting("pool_size", "SINKFRAME_DB_POOL_SIZE", "most connections the writer pool opens", 4,
            parse=positive_int),
    Setting("prepare_threshold", "SINKFRAME_DB_PREPARE_THRESHOLD",
            "psycopg prepares a statement after this many runs; `off`: never (for PgBouncer in transaction "
            "mode and other proxies that do not keep prepared statements per connection)", 5,
            parse=count_or_off, blank_is_default=False),
    Setting("write_method", "SINKFRAME_WRITE_METHOD",
            "`copy` (binary COPY) or `insert` (one `INSERT ... SELECT FROM unnest` per table, for servers "
            "and proxies without COPY)", "copy", parse=one_of("copy", "insert")),
    Setting("write_timeout", "SINKFRAME_WRITE_TIMEOUT_SECONDS",
            "longest one attempt to write a batch (or read the stored offsets) may take; then its connection is "
            "shut, never reused, and the batch retried. Raise it if single writes are legitimately slower; "
            "`off`: no bound", 30.0, parse=seconds_or_off, default_text="`30`"),
    Setting("shutdown_timeout", "SINKFRAME_SHUTDOWN_TIMEOUT_SECONDS",
            "on SIGTERM, the sink exits within this long even if the database does not answer; a write still "
            "in flight after half of it is given up (not committed, read again on the next start)", 30.0,
            parse=positive_seconds, default_text="`30`"),
    Setting("thread_switch_interval", "SINKFRAME_THREAD_SWITCH_INTERVAL_MS",
            "how long one thread of `sinkframe run` may hold Python's interpreter lock while another waits "
            "for it (sys.setswitchinterval); each connector's writer waits this long for it after every "
            "database round trip while its consumer thread maps (docs/benchmark.md)", 0.5,
            parse=positive_milliseconds, default_text="`0.5`"),
    Setting("schema_dir", "SINKFRAME_SCHEMA_DIR", "schema spec folders or files, `:`-separated", "schema",
            option="--schema-dir", repeatable=True, blank_is_default=False,
            metavar="PATH"),
    Setting("apply_schema", "SINKFRAME_APPLY_SCHEMA",
            "create or update the connectors' tables from the specs before consuming; `0`: leave them alone",
            True, parse=as_flag, option="--no-schema", option_value=False, blank_is_default=False,
            option_help="Leave the tables alone: do not create or update them from the specs before consuming."),
    Setting("plain_postgres", "SINKFRAME_PLAIN_POSTGRES",
            "allow a server without TimescaleDB: plain tables, TimescaleDB objects skipped and listed",
            False, parse=as_flag, option="--plain-postgres", option_value=True),
    Setting("alerts_retention", "SINKFRAME_ALERTS_RETENTION",
            "how long alert transitions (`sinkframe_alerts`) and resolved alert states are kept; `off`: for "
            "ever. On TimescaleDB `sinkframe_alerts` becomes a hypertable with a retention policy; on plain "
            "PostgreSQL the sink deletes them", "90 days", parse=interval_or_off, default_text="`90 days`",
            blank_is_default=False),
    Setting("plugins_dirs", "SINKFRAME_PLUGINS_DIRS", "folders of extra mapper plugins (`*.py`), `:`-separated",
            (), parse=Path, option="--plugins-dir", repeatable=True, goes_to="command",
            metavar="DIR"),
    Setting("metrics_port", "SINKFRAME_METRICS_PORT", "serve `/metrics`, `/healthz` and `/readyz` on this port",
            None, parse=port_number, option="--metrics-port", goes_to="command",
            default_text="off", metavar="PORT"),
    Setting("metrics_host", "SINKFRAME_METRICS_HOST", "the address the metrics port listens on", "0.0.0.0",
            blank_is_default=False),
    Setting("stall_after", "SINKFRAME_STALL_AFTER",
            "seconds without a batch written, while messages wait (lag > 0), after which a running "
            "connector counts as stalled (readiness, metrics, status)", 60.0, parse=positive_seconds,
            default_text="`60`"),
    Setting("progress_interval", "SINKFRAME_PROGRESS_INTERVAL",
            "seconds between progress log lines when stderr is not a terminal", 30.0, parse=positive_seconds,
            default_text="`30`"),
    Setting("log_level", "SINKFRAME_LOG_LEVEL", "log level", "INFO",
            parse=one_of("DEBUG", "INFO", "WARNING", "ERROR"), option="--log-level", goes_to="command"),
    Setting("log_format", "SINKFRAME_LOG_FORMAT", "`text` for people, `json`: one JSON object per line", "text",
            parse=one_of("text", "json"), option="--log-format", goes_to="command"),
)
SETTING: Mapping[str, Setting] = {s.name: s for s in SETTINGS}
# SINKFRAME_DB_* names that are sinkframe settings, not libpq parameters.
DB_SETTING_NAMES = {s.env[len(DB_ENV_PREFIX):] for s in SETTINGS
                    if s.env.startswith(DB_ENV_PREFIX) and not s.is_family and s.goes_to != "dsn"}
# libpq parameter -> the setting of its default (client-side timeouts).
CONNECTION_DEFAULTS: Mapping[str, Setting] = {
    s.env[len(DB_ENV_PREFIX):].lower(): s for s in SETTINGS
    if s.env.startswith(DB_ENV_PREFIX) and not s.is_family and s.goes_to == "dsn"}
WRITE_METHODS = SETTING["write_method"].parse.choices


def read_setting(name: str, env: Mapping[str, str] | None = None) -> Any:
    """One declared setting from the environment (for a command that needs only it)."""
    return SETTING[name].read(os.environ if env is None else env)


def kafka_property_from_env_name(name: str) -> str:
    """`SINKFRAME_KAFKA_SESSION_TIMEOUT_MS` -> `session.timeout.ms`."""
    return name[len(KAFKA_ENV_PREFIX):].lower().replace("_", ".")


@dataclass(frozen=True)
class Settings:
    kafka: Mapping[str, str] = field(default_factory=dict)
    dsn: str = ""
    pool_size: int = SETTING["pool_size"].default
    write_method: str = SETTING["write_method"].default
    plain_postgres: bool = SETTING["plain_postgres"].default
    schema_dir: str = SETTING["schema_dir"].default
    apply_schema: bool = SETTING["apply_schema"].default
    # None: never prepare (see SETTINGS: proxies, and the embedded engine whose
    # connections share one session).
    prepare_threshold: int | None = SETTING["prepare_threshold"].default
    metrics_host: str = SETTING["metrics_host"].default
    stall_after: float = SETTING["stall_after"].default
    write_timeout: float | None = SETTING["write_timeout"].default
    shutdown_timeout: float = SETTING["shutdown_timeout"].default
    progress_interval: float = SETTING["progress_interval"].default
    thread_switch_interval: float = SETTING["thread_switch_interval"].default
    alerts_retention: str | None = SETTING["alerts_retention"].default
    # libpq parameter -> value added to `dsn` where it does not say (client-side timeouts)
    connection_defaults: Mapping[str, str] = field(default_factory=lambda: connection_defaults_from_env({}))

    def __post_init__(self):
        # Here, so that a DSN given any way (environment, --database-url, a test's
        # Settings(dsn=...)) gets the client-side timeouts.
        object.__setattr__(self, "dsn", with_connection_defaults(self.dsn, self.connection_defaults))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        return cls(kafka=kafka_settings_from_env(env), dsn=database_dsn_from_env(env),
                   connection_defaults=connection_defaults_from_env(env),
                   **{s.name: s.read(env) for s in SETTINGS if s.goes_to == "settings"})

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
    props = {"bootstrap.servers": SETTING["brokers"].read(env)}
    for name, value in env.items():
        if name.startswith(KAFKA_ENV_PREFIX) and len(name) > len(KAFKA_ENV_PREFIX):
            props[kafka_property_from_env_name(name)] = value
    return props


def database_dsn_from_env(env: Mapping[str, str]) -> str:
    base = SETTING["database_url"].read(env)
    params: dict[str, str] = {}
    if not base:
        params = {key: SETTING[name].read(env) for key, name in (
            ("host", "database_host"), ("port", "database_port"), ("dbname", "database_name"),
            ("user", "database_user"))}
        password = SETTING["database_password"].read(env)
        if password:
            params["password"] = password
    for name, value in env.items():
        param = name[len(DB_ENV_PREFIX):]
        if name.startswith(DB_ENV_PREFIX) and param not in DB_SETTING_NAMES:
            default_of = CONNECTION_DEFAULTS.get(param.lower())
            if default_of is not None:  # given explicitly: checked, and wins over the URL's like any
                if default_of.blank_is_default and not value.strip():
                    continue
                value = str(default_of.from_text(value, name))
            params[param.lower()] = value
    params.setdefault("application_name", "sinkframe")
    try:
        return make_conninfo(base or "", **params)
    except Exception as err:  # psycopg.ProgrammingError on a malformed DSN
        raise ConfigError(f"SINKFRAME_DATABASE_URL / SINKFRAME_DB_*: invalid connection string: "
                          f"{redact_text(str(err), params.get('password'))}") from None


def connection_defaults_from_env(env: Mapping[str, str]) -> dict[str, str]:
    """The client-side timeouts to add to a DSN that does not set them: the variables, else the defaults."""
    return {param: str(setting.read(env)) for param, setting in CONNECTION_DEFAULTS.items()}


def with_connection_defaults(dsn: str, defaults: Mapping[str, str]) -> str:
    """`dsn` with each of `defaults` it does not set itself (a DSN that cannot be parsed is left
    as it is: connecting reports it)."""
    try:
        given = conninfo_to_dict(dsn)
    except Exception:  # psycopg.ProgrammingError: the connect that follows says what is wrong
        return dsn
    missing = {k: v for k, v in defaults.items() if given.get(k) in (None, "")}
    return make_conninfo(dsn, **missing) if missing else dsn


# --- what the declaration generates: CLI options and the README table ---------------------

def setting_option(name: str):
    """The click option of a declared setting: its name, help, type and default from SETTINGS.

    A setting of `Settings` gets an override option (None when not given; the
    environment is read by `Settings.from_env`). A command's own setting gets an
    option that click fills from the variable, parsed the same way.
    """
    setting = SETTING[name]
    help_text = _option_help(setting)
    if setting.option_value is not None:
        return click.option(setting.option, name, is_flag=True, flag_value=setting.option_value, default=None,
                            help=help_text)
    choices = getattr(setting.parse, "choices", None)
    param_type = click.Choice(choices, case_sensitive=False) if choices else SettingParam(setting)
    if setting.goes_to == "command":
        return click.option(setting.option, name, envvar=setting.env, default=setting.default,
                            multiple=setting.repeatable, type=param_type, help=help_text)
    join = (lambda _ctx, _param, values: os.pathsep.join(map(str, values)) or None) if setting.repeatable else None
    return click.option(setting.option, name, multiple=setting.repeatable, type=param_type, callback=join,
                        help=help_text)


class SettingParam(click.ParamType):
    """An option's text parsed by its setting's parser, the one its variable goes through."""

    def __init__(self, setting: Setting):
        self.setting = setting
        self.name = setting.metavar
        if setting.repeatable:
            self.envvar_list_splitter = os.pathsep

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        try:
            return self.setting.parse(value)
        except ValueError as err:
            self.fail(str(err), param, ctx)


def _option_help(setting: Setting) -> str:
    text = setting.option_help or _sentence(setting.description)
    # A switch's default is "not given"; the variable's default would read as the switch's.
    if setting.shown_default and setting.option_value is None:
        return f"{text} [env: {setting.env}; default: {setting.shown_default.strip('`')}]"
    return f"{text} [env: {setting.env}]"


def _sentence(description: str) -> str:
    description = description.replace("`", "")
    return description[:1].upper() + description[1:] + ("" if description.endswith(".") else ".")


def settings_table() -> str:
    """The README's settings table (markdown), one row per declared setting."""
    rows = ["| variable | option | meaning | default |", "|---|---|---|---|"]
    for s in SETTINGS:
        option = f"`{s.option}`" + (" (repeatable)" if s.repeatable else "") if s.option else ""
        rows.append(f"| `{s.env}` | {option} | {s.description} | {s.shown_default} |")
    return "\n".join(rows) + "\n"


# --- secrets ---------------------------------------------------------------------------------

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
