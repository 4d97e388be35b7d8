"""Sorting database errors by SQLSTATE class: retry, poison row, or fatal.

Like Telegraf's postgresql output: connection trouble, deadlocks, serialization
failures, lack of resources and an operator shutting the server down are
temporary and retried; data exceptions and constraint violations are caused by
the rows themselves (poison); anything else (undefined table, permissions...)
is a configuration problem that retrying cannot fix.
"""
from __future__ import annotations

import psycopg
import psycopg_pool

RETRIABLE_CLASSES = frozenset({
    "08",  # connection exception
    "40",  # transaction rollback: serialization failure, deadlock
    "53",  # insufficient resources (disk full, out of memory, too many connections)
    "57",  # operator intervention: admin shutdown, crash shutdown, cannot connect now
    "58",  # system error (I/O)
    "55",  # object not in prerequisite state: lock not available
})
POISON_CLASSES = frozenset({
    "22",  # data exception: out of range, invalid text, NUL byte, bad datetime
    "23",  # integrity constraint violation
})


def sqlstate_of(err: BaseException) -> str | None:
    return getattr(err, "sqlstate", None)


def is_retriable(err: BaseException) -> bool:
    if isinstance(err, psycopg_pool.PoolTimeout):
        return True
    state = sqlstate_of(err)
    if state is None:
        # No SQLSTATE: the connection broke or could not be made.
        return isinstance(err, (psycopg.OperationalError, psycopg.InterfaceError))
    return state[:2] in RETRIABLE_CLASSES


def is_poison(err: BaseException) -> bool:
    state = sqlstate_of(err)
    return state is not None and state[:2] in POISON_CLASSES
