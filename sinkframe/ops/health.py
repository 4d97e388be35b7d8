"""Liveness and readiness: what /healthz and /readyz answer, with the reasons.

- live: the process runs and no connector has failed (a failed connector stops
  the process anyway; until then, say so).
- ready: the database answers a `SELECT 1` on a connection of its own (short
  timeouts, result cached for a second so probes cannot load the database),
  and every connector is running: it has its partitions, or the group gave it
  none (idle), and it is not waiting for the database.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolTimeout

from sinkframe.config.settings import redact_dsn, redact_error
from sinkframe.pipeline.stats import ConnectorState

log = logging.getLogger(__name__)

_JOB_STATS = sql.SQL(
    "SELECT s.job_id, j.proc_name, coalesce(s.hypertable_name, ''), s.total_failures "
    "FROM timescaledb_information.job_stats s JOIN timescaledb_information.jobs j USING (job_id)")


@dataclass(frozen=True)
class JobFailures:
    job_id: int
    proc_name: str
    hypertable: str
    failures: int


class DatabaseProbe:
    """`check()` -> (ok, reason). One connection of its own, reopened after a failure.

    A server that takes one connection at a time (the embedded engine; the writer
    pool then has max_size 1) would refuse a second one: give that `pool` and the
    probe borrows the writer's connection instead. A pool busy writing keeps the
    previous answer rather than report an outage.
    """

    def __init__(self, dsn: str, *, pool: ConnectionPool | None = None, timeout: float = 2.0,
                 cache_seconds: float = 1.0, jobs_cache_seconds: float = 30.0):
        self.dsn = dsn
        self.pool = pool
        self.timeout = timeout
        self.cache_seconds = cache_seconds
        self.jobs_cache_seconds = jobs_cache_seconds
        self._conn: psycopg.Connection | None = None
        self._lock = threading.Lock()
        self._checked_at = float("-inf")
        self._result: tuple[bool, str] = (False, "not checked yet")
        self._jobs_at = float("-inf")
        self._jobs: list[JobFailures] = []

    def check(self) -> tuple[bool, str]:
        with self._lock:
            if time.monotonic() - self._checked_at >= self.cache_seconds:
                self._result = self._select_one()
                self._checked_at = time.monotonic()
            return self._result

    def job_failures(self) -> list[JobFailures]:
        """TimescaleDB background job failure counts (empty without TimescaleDB), cached."""
        with self._lock:
            if time.monotonic() - self._jobs_at >= self.jobs_cache_seconds:
                self._jobs = self._read_jobs()
                self._jobs_at = time.monotonic()
            return self._jobs

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _query(self, statement: sql.Composable, params=None) -> list[tuple]:
        if self.pool is None:
            return self._connection().execute(statement, params).fetchall()
        with self.pool.connection(timeout=self.timeout) as conn:
            return conn.execute(statement, params).fetchall()

    def _pool_busy(self) -> bool:
        stats = self.pool.get_stats()
        return stats.get("pool_size", 0) >= self.pool.max_size and not stats.get("pool_available", 0)

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=max(2, round(self.timeout)),
                                         application_name="sinkframe-readiness")
            self._conn.execute(sql.SQL("SET statement_timeout = {}").format(
                sql.Literal(int(self.timeout * 1000))))
        return self._conn

    def _select_one(self) -> tuple[bool, str]:
        try:
            self._query(sql.SQL("SELECT 1"))
            return True, "ok"
        except PoolTimeout as err:
            if self._pool_busy():
                return self._result if self._checked_at > float("-inf") else (True, "ok (pool busy)")
            return False, self._describe(err)
        except psycopg.Error as err:
            self._drop()
            return False, self._describe(err)

    def _read_jobs(self) -> list[JobFailures]:
        try:
            present = self._query(sql.SQL("SELECT to_regclass({})").format(
                sql.Literal("timescaledb_information.job_stats")))[0][0]
            if present is None:
                return []
            return [JobFailures(*row) for row in self._query(_JOB_STATS)]
        except psycopg.Error as err:
            log.debug("reading TimescaleDB job stats: %s", self._describe(err))
            self._drop()
            return self._jobs

    def _describe(self, err: psycopg.Error) -> str:
        return f"{redact_dsn(self.dsn)}: {error_line(err, self.dsn)}"

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
        self._conn = None


def error_line(err: Exception, dsn: str) -> str:
    """The first line of a driver error, with the DSN's password (if any) masked."""
    return (redact_error(err, dsn).splitlines() or [type(err).__name__])[0]


def connector_states(pipeline) -> dict[str, dict]:
    return {task.stats.connector: {
        "state": str(task.stats.state),
        "assigned_partitions": list(task.stats.assigned),
        "paused": task.stats.paused,
        **({"failure": str(task.failure)} if task.failure is not None else {}),
    } for task in (pipeline.tasks if pipeline else [])}


def liveness(pipeline) -> tuple[bool, dict]:
    connectors = connector_states(pipeline)
    failed = [name for name, c in connectors.items() if c["state"] == ConnectorState.FAILED]
    body = {"status": "failed" if failed else "ok" if pipeline else "starting",
            "reasons": [f"connector {name} failed: {connectors[name].get('failure', '')}" for name in failed],
            "connectors": connectors}
    return not failed, body


def readiness(pipeline, probe: DatabaseProbe | None) -> tuple[bool, dict]:
    reasons = []
    if pipeline is None or probe is None:
        return False, {"status": "not ready", "reasons": ["starting: connectors not running yet"],
                       "database": None, "connectors": {}}
    db_ok, db_reason = probe.check()
    if not db_ok:
        reasons.append(f"database unreachable: {db_reason}")
    connectors = connector_states(pipeline)
    for name, c in connectors.items():
        if c["state"] != ConnectorState.RUNNING:
            reasons.append(f"connector {name} is {c['state']}")
    return not reasons, {"status": "ready" if not reasons else "not ready", "reasons": reasons,
                         "database": {"ok": db_ok, "detail": db_reason}, "connectors": connectors}
