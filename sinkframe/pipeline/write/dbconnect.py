"""Connecting to the database at start, and giving up a connection that no longer answers.

A database that cannot be reached when the sink starts is an outage like any
other: the sink waits for it (`wait_for_database`). A database that answers
"no" is not: a wrong password or a database that does not exist fails at once,
with the server's words.

libpq gives no SQLSTATE for a failed connection attempt (psycopg's error has
`sqlstate` None): the server's FATAL message is all there is. So the refusals
that retrying cannot fix are recognised by the messages PostgreSQL sends for
them (28P01 and 28000: authentication; 3D000: no such database), and anything
else (refused, timed out, the server starting up or shutting down, too many
clients) counts as "not reachable yet" and is retried, with its message logged.
A server whose messages are translated (`lc_messages`) is therefore retried
instead of failing fast, and every attempt logs what it said.
"""
from __future__ import annotations

import logging
import re
import socket
import threading
import time
from typing import Callable

import psycopg

from sinkframe.config.settings import redact_dsn, redact_error
from sinkframe.errors import SinkframeError

log = logging.getLogger(__name__)

# PostgreSQL's messages for refusals that do not go away by waiting (English server messages).
_REFUSALS = (
    ("authentication failed", re.compile(
        r"password authentication failed|authentication failed for user|no pg_hba\.conf entry|"
        r"role \".*\" does not exist|password is required|no password supplied|"
        r"is not permitted to log in")),
    ("no such database", re.compile(r"database \".*\" does not exist")),
    ("the server's certificate is refused", re.compile(r"certificate verify failed|"
                                                        r"server certificate for .* does not match")),
)

FIRST_RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 15.0


class DatabaseRefused(SinkframeError):
    """The server answered, and said no: retrying cannot help (wrong password, no such database)."""


def refusal(err: psycopg.Error) -> str | None:
    """What kind of final refusal `err` (from a connection attempt) is; None: worth retrying."""
    text = str(err)
    for kind, pattern in _REFUSALS:
        if pattern.search(text):
            return kind
    pgconn = getattr(err, "pgconn", None)
    if pgconn is not None and getattr(pgconn, "needs_password", False):
        return "authentication failed"  # the server asked for a password and none was given
    return None


def retry_delay(attempt: int) -> float:
    """Seconds before connection attempt `attempt + 1`: doubling from 1 s, at most 15 s."""
    return min(FIRST_RETRY_SECONDS * 2 ** (attempt - 1), MAX_RETRY_SECONDS)


def wait_for_database(dsn: str, stop: threading.Event, *,
                      on_waiting: Callable[[str], None] | None = None) -> bool:
    """Connect until the database answers (True) or `stop` is set (False).

    Raises DatabaseRefused when the server refuses the login itself. Each failed
    attempt is logged with the redacted DSN and reported to `on_waiting`.
    """
    attempt = 0
    while not stop.is_set():
        try:
            with psycopg.connect(dsn, application_name="sinkframe-start"):
                return True
        except psycopg.Error as err:
            attempt += 1
            detail = first_line(redact_error(err, dsn))
            kind = refusal(err)
            if kind is not None:
                raise DatabaseRefused(f"cannot connect to the database ({redact_dsn(dsn)}): {kind}: "
                                      f"{detail}") from None
            delay = retry_delay(attempt)
            log.warning("waiting for the database (%s): attempt %d failed, next in %.0fs: %s",
                        redact_dsn(dsn), attempt, delay, detail)
            if on_waiting is not None:
                on_waiting(detail)
            stop.wait(delay)
    return False


def first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0].removeprefix("connection failed: ")


def abort_connection(conn: psycopg.Connection) -> bool:
    """Make whatever waits on `conn` (in any thread) fail now, and the connection unusable.

    A connection to a partitioned server has no end for its query to wait for:
    the server never sees it, so neither statement_timeout nor a cancel request
    can reach it, and the kernel may keep ACKing (a proxy in between). Shutting
    the socket down ends the wait with an error in the thread that waits, which
    is safe from another thread, unlike closing the connection under it.
    False when the connection had no socket any more (closed or broken already).
    """
    try:
        fd = conn.pgconn.socket
    except psycopg.OperationalError:  # already closed or broken: nothing waits on it
        return False
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        return False
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        sock.detach()  # the descriptor stays libpq's
    return True


class _Watchdog:
    """One thread for every Deadline: a thread per deadline would cost one per batch."""

    def __init__(self):
        self._cond = threading.Condition()
        self._due: dict[int, tuple[float, "Deadline"]] = {}
        self._thread: threading.Thread | None = None

    def watch(self, deadline: "Deadline", at: float) -> None:
        with self._cond:
            self._due[id(deadline)] = (at, deadline)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sinkframe-deadlines", daemon=True)
                self._thread.start()
            self._cond.notify()

    def forget(self, deadline: "Deadline") -> None:
        with self._cond:
            self._due.pop(id(deadline), None)

    def _run(self) -> None:
        while True:
            with self._cond:
                now = time.monotonic()
                expired = [d for at, d in self._due.values() if at <= now]
                for deadline in expired:
                    del self._due[id(deadline)]
                if not expired:
                    nearest = min((at for at, _ in self._due.values()), default=None)
                    self._cond.wait(None if nearest is None else nearest - now)
                    continue
            for deadline in expired:
                deadline._expire()


_WATCHDOG = _Watchdog()


class Deadline:
    """`with Deadline(conn, seconds):` gives the connection up (abort_connection) if the block
    is still running after `seconds`; `expired` says whether it was."""

    def __init__(self, conn: psycopg.Connection, seconds: float):
        self._conn = conn
        self._seconds = seconds
        self._lock = threading.Lock()
        self._over = False
        self.expired = False

    def _expire(self) -> None:
        with self._lock:  # held while aborting: once __exit__ returns, `expired` tells the truth
            if self._over:
                return
            self.expired = True
            abort_connection(self._conn)

    def __enter__(self) -> "Deadline":
        _WATCHDOG.watch(self, time.monotonic() + self._seconds)
        return self

    def __exit__(self, *exc) -> None:
        with self._lock:
            self._over = True
        _WATCHDOG.forget(self)
