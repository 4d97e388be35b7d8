"""Run a plan: idempotent, and safe when several connector instances start at once.

Transactions: apply switches the connection to autocommit for its duration (and
restores the previous mode afterwards), because `CREATE MATERIALIZED VIEW ...
WITH (timescaledb.continuous)` must not run inside a transaction block on many
TimescaleDB versions. Consecutive ordinary steps then run together in one
explicit transaction (all or nothing: a failed table change leaves no half-made
table), and each continuous aggregate is created on its own between those
transactions. A failure therefore leaves earlier transactions committed; the
next plan shows exactly what is left, and apply picks up from there.

Concurrency: apply holds a session-level advisory lock (pg_advisory_lock, not the
transaction-level variant, since the work spans several transactions) from
before it reads the live schema until it is done. A second instance waits, then
plans against what the first created and finds nothing (or less) to do.
"""
from __future__ import annotations

import logging

import psycopg
from psycopg import sql

from sinkframe.errors import SchemaError
from sinkframe.schema.introspect import execute
from sinkframe.schema.planner import Plan, Step, plan_schema
from sinkframe.schema.spec import SchemaSpec

log = logging.getLogger(__name__)

# Arbitrary, fixed: every sinkframe process applying a schema to the same database takes this lock.
ADVISORY_LOCK_KEY = 0x51_4B_46_52_4D_53_43_48  # "SINKFRMSCH"-ish, fits a bigint


def apply_schema(conn: psycopg.Connection, spec: SchemaSpec, *, tables: set[str] | None = None,
                 plain_postgres: bool = False) -> Plan:
    """Plan under the schema lock and run the plan. Returns the plan that was run."""
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise SchemaError("apply_schema needs a connection outside a transaction: commit or roll back first")
    autocommit = conn.autocommit
    conn.autocommit = True
    try:
        _lock(conn)
        try:
            plan = plan_schema(conn, spec, tables=tables, plain_postgres=plain_postgres)
            run_plan(conn, plan)
            return plan
        finally:
            _unlock(conn)
    finally:
        if not conn.closed and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            conn.autocommit = autocommit


def run_plan(conn: psycopg.Connection, plan: Plan) -> None:
    """Execute the steps on an autocommit connection, batching transactional ones."""
    total = len(plan.steps)
    for batch in _batches(plan.steps):
        if batch[0].transactional:
            try:
                with conn.transaction():
                    for step in batch:
                        _execute(conn, step, plan, total)
            except psycopg.Error as err:
                raise _failure(batch, plan, total, err, rolled_back=True) from err
        else:
            try:
                _execute(conn, batch[0], plan, total)
            except psycopg.Error as err:
                raise _failure(batch, plan, total, err, rolled_back=False) from err


def _execute(conn: psycopg.Connection, step: Step, plan: Plan, total: int) -> None:
    number = plan.steps.index(step) + 1
    log.info("schema step %d/%d: %s", number, total, step.description)
    try:
        execute(conn, step.sql)
    except psycopg.Error as err:
        err.sinkframe_step = step  # type: ignore[attr-defined]
        raise


def _failure(batch: list[Step], plan: Plan, total: int, err: psycopg.Error, *, rolled_back: bool) -> SchemaError:
    step = getattr(err, "sinkframe_step", batch[0])
    number = plan.steps.index(step) + 1
    undone = " (the steps of its transaction were rolled back)" if rolled_back and len(batch) > 1 else ""
    return SchemaError(f"applying the schema failed at step {number}/{total}, {step.description}: "
                       f"{str(err).strip()}{undone}. Earlier transactions stay committed; "
                       "run `sinkframe schema plan` to see what is left.")


def _batches(steps: list[Step]) -> list[list[Step]]:
    batches: list[list[Step]] = []
    for step in steps:
        if step.transactional and batches and batches[-1][0].transactional:
            batches[-1].append(step)
        else:
            batches.append([step])
    return batches


def _lock(conn: psycopg.Connection) -> None:
    try:
        execute(conn, sql.SQL("SELECT pg_advisory_lock(%s)"), [ADVISORY_LOCK_KEY])
    except psycopg.Error as err:
        raise SchemaError(f"taking the schema lock (pg_advisory_lock): {err}") from err


def _unlock(conn: psycopg.Connection) -> None:
    if conn.closed or conn.broken:
        return  # the server released the lock with the session
    try:
        execute(conn, sql.SQL("SELECT pg_advisory_unlock(%s)"), [ADVISORY_LOCK_KEY])
    except psycopg.Error:
        log.warning("could not release the schema lock; it is released when the connection closes")
