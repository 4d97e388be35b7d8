"""What the sink under test reads: its environment (as a deployment sets it) and connector files."""
from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from sinkframe.config.settings import Settings

from .paths import REPO

# Tansu delays the first group assignment by about half the session timeout (SERVICES.md),
# so every test shortens the session; how far depends on what the test does.
#  - FAST: a 1 s first join, so that run_until_idle's 2 s idle exit cannot fire before
#    the first assignment, and a kill -9'd member leaves the group after 2 s.
#  - STEADY: room for outages, rebalances and loaded machines without expulsions.
FAST_GROUP_JOIN = {"SINKFRAME_KAFKA_SESSION_TIMEOUT_MS": "2000", "SINKFRAME_KAFKA_HEARTBEAT_INTERVAL_MS": "500"}
STEADY_GROUP_JOIN = {"SINKFRAME_KAFKA_SESSION_TIMEOUT_MS": "6000", "SINKFRAME_KAFKA_HEARTBEAT_INTERVAL_MS": "1000"}

# The simulator's message kinds -> the variable the shipped connector files (configs/) read their topic from.
TOPIC_ENV = {"raw": "RAW_TOPIC", "enriched": "ENRICHED_TOPIC", "smart_breaker": "SMART_BREAKER_TOPIC"}


def sink_env(bootstrap: str, dsn: str, *, schema_dir: Path | None = None,
             group_join: Mapping[str, str] = STEADY_GROUP_JOIN, **more: str) -> dict[str, str]:
    """Broker, plain-PostgreSQL database and a quick group join, then `more` (which overrides).

    With `schema_dir` the sink applies that schema at start; without, it applies none
    (the test creates its tables, e.g. with db.create_tables)."""
    env = {"REDPANDA_BROKERS": bootstrap, "SINKFRAME_DATABASE_URL": dsn, "SINKFRAME_PLAIN_POSTGRES": "1"}
    if schema_dir is None:
        env["SINKFRAME_APPLY_SCHEMA"] = "0"
    else:
        env["SINKFRAME_SCHEMA_DIR"] = str(schema_dir)
    return {**env, **group_join, **more}


def sink_settings(monkeypatch, bootstrap: str, dsn: str, topics: dict, **extra: str) -> Settings:
    """The repository's schema, the simulator's `topics` ({kind: topic}) and `extra`, set in the
    environment (the shipped connector files read their topics from it), as Settings."""
    env = sink_env(bootstrap, dsn, schema_dir=REPO / "schema", SINKFRAME_BATCH_MAX_WAIT_MS="200",
                   **{TOPIC_ENV[k]: v for k, v in topics.items()}, **extra)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings.from_env()


@contextmanager
def exported(env: Mapping[str, str]) -> Iterator[None]:
    """`env` set in os.environ for the duration (connector files interpolate ${VARS} from it)."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def write_connector(folder: Path, *, name: str, topic: str, plugin: str = "raw", tolerance: str = "all",
                    max_rows: int = 20_000, max_wait_ms: int = 200, extra: str = "") -> Path:
    """A connector file `folder/name.yaml`; `extra` is appended as is (YAML)."""
    path = folder / f"{name}.yaml"
    path.write_text(f"""\
name: {name}
topic: {topic}
mapper:
  plugin: {plugin}
batch:
  max_rows: {max_rows}
  max_wait_ms: {max_wait_ms}
errors:
  tolerance: {tolerance}
{extra}""")
    return path
