"""Liveness and readiness: what /healthz and /readyz answer, with the reasons.

- live: the process runs and no connector has failed (a failed connector stops
  the process anyway; until then, say so).
- ready: the pipeline has started (not still waiting for the database or
  provisioning), the database answered a `SELECT 1` recently, and every
  connector is running: it has its partitions, or the group gave it none
  (idle), it is not waiting for the database, and it is not stalled.

The endpoints never wait on the database: a prober thread (`DatabaseProbe`)
asks it, with a deadline on each query after which the connection is given up
(a partitioned server never answers, and never sees a statement_timeout), and
the endpoints serve its last answer and its age.
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
from sinkframe.pipeline.write.dbconnect import Deadline

log = logging.getLogger(__name__)

_JOB_STATS = sql.SQL(
    "SELECT s.job_id, j.proc_name, coalesce(s.hypertable_name, ''), s.total_failures "
    "FROM timescaledb_information.job_stats s JOIN timescaledb_information.jobs j USING (job_id)")

PROBE_INTERVAL_SECONDS = 1.0
PROBE_TIMEOUT_SECONDS = 2.0  # a probe query unanswered this long: its connection is given up
# Readiness: the last good answer older than this is "not ready" (the probe hangs or fails).
PROBE_STALE_SECONDS = 5.0
JOBS_INTERVAL_SECONDS = 30.0


@dataclass(frozen=True)
class JobFailures:
    job_id: int
    proc_name: str
    hypertable: str
    failures: int


@dataclass(frozen=True)
class ProbeAnswer:
    ok: bool
    detail: str
    at: float  # time.monotonic() when the probe finished


class DatabaseProbe:
    """A thread that asks the database `SELECT 1` every `interval` seconds; `check()` -> (ok, reason)
    from its last answer, without waiting.

    One connection of its own, reopened after a failure. A server that takes one
    connection at a time (the embedded engine; the writer pool then has max_size 1)
    would refuse a second one: give that `pool` and the probe borrows the writer's
    connection instead. A pool busy writing keeps the previous answer rather than
    report an outage (its age grows meanwhile).
    """

    def __init__(self, dsn: str, *, pool: ConnectionPool | None = None, timeout: float = PROBE_TIMEOUT_SECONDS,
                 interval: float = PROBE_INTERVAL_SECONDS, stale_after: float = PROBE_STALE_SECONDS,
                 jobs_interval: float = JOBS_INTERVAL_SECONDS):
        self.dsn = dsn
        self.pool = pool
        self.timeout = timeout
        self.interval = interval
        self.stale_after = stale_after
        self.jobs_interval = jobs_interval
        self._conn: psycopg.Connection | None = None
        self._answer: ProbeAnswer | None = None
        self._last_ok_at: float | None = None
        self._jobs: list[JobFailures] = []
        self._jobs_at = float("-inf")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sinkframe-db-probe", daemon=True)

    # -- what the endpoints read (never waits) ------------------------------------------
    def start(self) -> "DatabaseProbe":
        self._thread.start()
        return self

    def check(self) -> tuple[bool, str]:
        answer, now = self._answer, time.monotonic()
        if answer is None:
            return False, "not checked yet"
        if not answer.ok:
            return False, answer.detail
        if self._last_ok_at is None or now - self._last_ok_at > self.stale_after:
            return False, f"{redact_dsn(self.dsn)}: no answer for {now - answer.at:.0f}s"
        return True, answer.detail

    def age(self) -> float | None:
        """Seconds since the last probe finished (None: none has yet); grows while a probe hangs."""
        answer = self._answer
        return None if answer is None else time.monotonic() - answer.at

    def job_failures(self) -> list[JobFailures]:
        """TimescaleDB background job failure counts (empty without TimescaleDB), as last read."""
        return self._jobs

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2 * self.timeout + 1)  # a connect and a query, each bounded
        self._drop()

    # -- the prober thread ------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            self.probe_once()
            self._stop.wait(self.interval)

    def probe_once(self) -> None:
        """One `SELECT 1` (and, when due, the job failures); what `check()` then answers."""
        answer = self._select_one()
        if answer is None:  # the pool was busy: keep the previous answer
            return
        self._answer = answer
        if answer.ok:
            self._last_ok_at = answer.at
            if answer.at - self._jobs_at >= self.jobs_interval:
                self._jobs = self._read_jobs()
                self._jobs_at = time.monotonic()

    def _query(self, statement: sql.Composable, params=None) -> list[tuple]:
        if self.pool is None:
            conn = self._connection()
            with Deadline(conn, self.timeout):
                return conn.execute(statement, params).fetchall()
        with self.pool.connection(timeout=self.timeout) as conn, Deadline(conn, self.timeout):
            return conn.execute(statement, params).fetchall()

    def _pool_busy(self) -> bool:
        stats = self.pool.get_stats()
        return stats.get("pool_size", 0) >= self.pool.max_size and not stats.get("pool_available", 0)

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=max(2, round(self.timeout)),
                                         application_name="sinkframe-readiness")
            # For a server that answers slowly; one that never answers is the Deadline's.
            self._conn.execute(sql.SQL("SET statement_timeout = {}").format(
                sql.Literal(int(self.timeout * 1000))))
        return self._conn

    def _select_one(self) -> ProbeAnswer | None:
        try:
            self._query(sql.SQL("SELECT 1"))
            return ProbeAnswer(True, "ok", time.monotonic())
        except PoolTimeout as err:
            if self._pool_busy():
                return None if self._answer is not None else ProbeAnswer(True, "ok (pool busy)", time.monotonic())
            return ProbeAnswer(False, self._describe(err), time.monotonic())
        except psycopg.Error as err:
            self._drop()
            return ProbeAnswer(False, self._describe(err), time.monotonic())

    def _read_jobs(self) -> list[JobFailures]:
        try:
            present = self._query(sql.SQL("SELECT to_regclass({})").format(
                sql.Literal("timescaledb_information.job_stats")))[0][0]
            if present is None:
                return []
            return [JobFailures(*row) for row in self._query(_JOB_STATS)]
        except (psycopg.Error, PoolTimeout) as err:
            log.debug("reading TimescaleDB job stats: %s", self._describe(err))
            self._drop()
            return self._jobs

    def _describe(self, err: Exception) -> str:
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


def connector_states(pipeline, stalls=None) -> dict[str, dict]:
    """Each connector's state as the endpoints show it: `stalled` (see ops/lag.py) for a
    running connector that makes no progress while messages wait."""
    states = {}
    for task in (pipeline.tasks if pipeline else []):
        stall = stalls.describe(task.stats) if stalls is not None else None
        states[task.stats.connector] = {
            "state": "stalled" if stall else str(task.stats.state),
            "assigned_partitions": list(task.stats.assigned),
            "paused": task.stats.paused,
            **({"stalled": stall} if stall else {}),
            **({"failure": str(task.failure)} if task.failure is not None else {}),
        }
    return states


def liveness(pipeline) -> tuple[bool, dict]:
    connectors = connector_states(pipeline)
    failed = [name for name, c in connectors.items() if c["state"] == ConnectorState.FAILED]
    body = {"status": "failed" if failed else "ok" if pipeline else "starting",
            "reasons": [f"connector {name} failed: {connectors[name].get('failure', '')}" for name in failed],
            "connectors": connectors}
    return not failed, body


def readiness(pipeline, probe: DatabaseProbe | None, stalls=None) -> tuple[bool, dict]:
    """Ready: started, the database answered lately, every connector running (not stalled)."""
    if pipeline is None or probe is None:
        return False, {"status": "not ready", "reasons": ["starting: connectors not running yet"],
                       "database": None, "connectors": {}}
    reasons = []
    phase = getattr(pipeline, "phase", "running")
    if phase != "running":
        waiting = getattr(pipeline, "waiting_reason", "")
        reasons.append(f"starting: {phase}" + (f" ({waiting})" if waiting else ""))
    db_ok, db_reason = probe.check()
    if not db_ok:
        reasons.append(f"database unreachable: {db_reason}")
    connectors = connector_states(pipeline, stalls)
    for name, c in connectors.items():
        if c["state"] != ConnectorState.RUNNING:
            reasons.append(f"connector {name} is {c.get('stalled', c['state'])}")
    age = probe.age()
    return not reasons, {"status": "ready" if not reasons else "not ready", "reasons": reasons,
                         "database": {"ok": db_ok, "detail": db_reason,
                                      "probe_age_seconds": None if age is None else round(age, 1)},
                         "connectors": connectors}
