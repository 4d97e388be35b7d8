"""What every benchmark section shares: the database, a fresh broker, the sink's environment."""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import psycopg

from sinkframe.bench import procstats
from sinkframe.bench.database import BenchTables
from sinkframe.devservices import TansuBroker

# Tansu delays the first group assignment by about half the session timeout; the
# benchmark reports that wait separately, and keeps it short.
SESSION_TIMEOUT_MS = "6000"


@dataclass(frozen=True)
class BenchContext:
    admin_dsn: str
    dsn: str
    config: Path
    tables: BenchTables
    schema_dir: Path
    plain_postgres: bool  # the server has no TimescaleDB: plain tables and indexes
    partitions: int
    workdir: Path
    bootstrap: str | None = None  # a broker given by the user (SINKFRAME_BENCH_BROKERS); else Tansu per section

    def log_path(self, name: str) -> Path:
        return self.workdir / f"{name}.log"


@contextlib.contextmanager
def broker(ctx: BenchContext, name: str) -> Iterator[str]:
    """A broker for one section: a fresh Tansu (memory only) unless one was given."""
    if ctx.bootstrap:
        yield ctx.bootstrap
        return
    with TansuBroker(log_path=ctx.log_path(f"{name}-broker")) as started:
        yield started.bootstrap


def sink_env(ctx: BenchContext, bootstrap: str, topic: str) -> dict[str, str]:
    """The environment of `sinkframe run`: its documented variables, nothing benchmark-specific.
    The sink applies the schema from `schema_dir` when it starts, as it does for users."""
    env = {
        "REDPANDA_BROKERS": bootstrap,
        "SINKFRAME_DATABASE_URL": ctx.dsn,
        "SINKFRAME_SCHEMA_DIR": str(ctx.schema_dir),
        "SMART_BREAKER_TOPIC": topic,
        "SINKFRAME_LOG_LEVEL": "INFO",
        "SINKFRAME_LOG_FORMAT": "text",
        "SINKFRAME_KAFKA_SESSION_TIMEOUT_MS": session_timeout_ms(),
    }
    if ctx.plain_postgres:
        env["SINKFRAME_PLAIN_POSTGRES"] = "1"
    return env


def session_timeout_ms() -> str:
    return os.environ.get("SINKFRAME_KAFKA_SESSION_TIMEOUT_MS", SESSION_TIMEOUT_MS)


def broker_pids() -> list[int]:
    """Tansu brokers this benchmark started (children of this process)."""
    return [pid for pid in procstats.descendants(os.getpid()) if (procstats.comm(pid) or "").startswith("tansu")]


def postgres_pids(dsn: str) -> list[int]:
    """The server's processes that work for the benchmark database: its backends (the sink's, and
    the benchmark's own pollers) and the shared background ones (WAL writer, checkpointer, ...).
    Backends of other databases on the same server are left out."""
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            return [pid for (pid,) in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() OR datname IS NULL")]
    except psycopg.Error:
        return []
