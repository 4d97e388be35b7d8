"""TimescaleDB under test: a database of a real server, or the embedded engine (the fallback).

`Timescale` is what the `timescale` fixture gives: the DSN, how to connect, the
sink settings the server needs, and the server's job scheduler (real servers only).

- real server: a database of the test's own; binary COPY, the default pool and
  prepared statements, as users run the sink; the server's background workers run
  the policies by themselves.
- engine: one connection at a time, no COPY, no background workers, shared by a
  module's tests. The sink runs with the insert method and a pool of one, the tests
  run jobs themselves (`CALL run_job`).

`PrivateTimescale` is a TimescaleDB server of one test's own (the shared server's
binaries, on another port and data folder), to kill with `pg_ctl stop -m immediate`.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from sinkframe.devservices import connect_to_engine

from .pgserver import PrivatePostgres
from .waiting import wait_for

# What the embedded engine needs from the sink (SERVICES.md): one connection, INSERT, no server-side
# prepared statements. A real server takes the defaults.
ENGINE_SINK_ENV = {"SINKFRAME_DB_POOL_SIZE": "1", "SINKFRAME_WRITE_METHOD": "insert",
                   "SINKFRAME_DB_PREPARE_THRESHOLD": "off"}
# The engine notices a closed connection a moment late and refuses a new one meanwhile.
ENGINE_PAUSE = 0.05


@dataclass(frozen=True)
class Timescale:
    dsn: str
    engine: bool

    @property
    def sink_env(self) -> dict[str, str]:
        return dict(ENGINE_SINK_ENV) if self.engine else {}

    @contextmanager
    def connect(self):
        """An autocommit connection for one step."""
        if not self.engine:
            with psycopg.connect(self.dsn, autocommit=True, connect_timeout=10) as conn:
                yield conn
            return
        conn = connect_to_engine(self.dsn)
        try:
            with conn:
                yield conn
        finally:
            time.sleep(ENGINE_PAUSE)

    def settle(self) -> None:
        """After a command that connected by itself (the CLI), let the engine free its slot."""
        if self.engine:
            time.sleep(ENGINE_PAUSE)

    def hold_jobs(self) -> None:
        """Unschedule every job of this database, for tests that run jobs themselves, one at a time.
        The engine runs none by itself."""
        if self.engine:
            return
        with self.connect() as conn:
            for (job,) in conn.execute("SELECT job_id FROM timescaledb_information.jobs WHERE job_id >= 1000"):
                conn.execute("SELECT alter_job(%s, scheduled => false)", [job])


def job_id(conn, relation: str, proc: str, schema: str | None = None) -> int:
    query = ("SELECT job_id FROM timescaledb_information.jobs WHERE hypertable_name = %s AND proc_name = %s"
             + (" AND hypertable_schema = %s" if schema else ""))
    return conn.execute(query, [relation, proc, *([schema] if schema else [])], prepare=False).fetchone()[0]


def run_job(conn, job: int) -> None:
    conn.execute(sql.SQL("CALL run_job({})").format(sql.Literal(job)), prepare=False)


def insert_raw(conn, table: sql.Composable, rows: list[tuple]) -> None:
    """(time, device_id) rows into a raw-shaped data table (INSERT: the engine has no COPY)."""
    with conn.cursor() as cur:
        cur.executemany(sql.SQL("INSERT INTO {} (time, device_id, source_topic, source_partition, source_offset) "
                                "VALUES (%s, %s, 't', 0, 0)").format(table), rows)


def successful_runs(conn, job: int) -> int:
    row = conn.execute("SELECT coalesce(total_successes, 0) FROM timescaledb_information.job_stats "
                       "WHERE job_id = %s",
                       [job]).fetchone()
    return row[0] if row else 0


def run_by_scheduler(conn, job: int, *, timeout: float = 120) -> None:
    """Let the server's scheduler start `job` now (no run_job) and wait for its success.

    The next run is put an hour away: a job rescheduled every few seconds may be running again when
    the test goes on, and unscheduling or dropping it then cancels that run, which the job's stats
    record as a failure."""
    before = successful_runs(conn, job)
    conn.execute("SELECT alter_job(%s, schedule_interval => interval '1 hour', next_start => now(), "
                 "scheduled => true)", [job])
    wait_for(lambda: successful_runs(conn, job) > before, timeout=timeout, interval=0.5,
             message=f"the scheduler to run job {job}")


class PrivateTimescale(PrivatePostgres):
    """A TimescaleDB server of a test's own: PrivatePostgres on the shared server's binaries, with the
    extension preloaded and its background workers on. Commits are synchronous by default here."""

    def __init__(self, bindir: Path, *, synchronous_commit: bool = True):
        super().__init__(synchronous_commit=synchronous_commit, bindir=bindir,
                         settings={"shared_preload_libraries": "timescaledb",
                                   "timescaledb.telemetry_level": "off",
                                   "timescaledb.max_background_workers": "4",
                                   "max_worker_processes": "12"})
