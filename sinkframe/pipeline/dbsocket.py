"""Ending a database call that waits on a connection nobody answers any more.

After a network partition, or a managed database failing over, the client's
connections stay open with nobody on the other end (no FIN, no RST): a psycopg
call on one waits for ever. psycopg's cancel cannot help (it asks the server on
a new connection, which a partition never answers), and closing the connection
from another thread is unsafe while libpq uses it. A `shutdown()` of its socket
is safe and immediate: the call fails at once with an OperationalError, as on a
reset, and the connection is broken for good (psycopg reports it closed).
"""
from __future__ import annotations

import os
import socket
import threading
from typing import Callable

import psycopg
from psycopg_pool import ConnectionPool

# How long the pool's check of an idle connection (an empty query) may take
# before the connection is taken for dead. A live server answers in milliseconds.
CHECK_TIMEOUT_SECONDS = 5.0


def shut_down(conn: psycopg.Connection) -> bool:
    """Shut the connection's socket (from any thread); False if it has none any more."""
    try:
        sock = socket.socket(fileno=os.dup(conn.pgconn.socket))
    except (OSError, psycopg.OperationalError):
        return False  # already closed
    with sock:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    return True


def check_within(seconds: float = CHECK_TIMEOUT_SECONDS) -> Callable[[psycopg.Connection], None]:
    """A pool `check` that takes a connection for dead when it does not answer within `seconds`.

    The pool checks an idle connection before it gives it out; on a connection
    that died while idle (opened before a failover), the check alone would wait
    for ever, inside `getconn`, where no write bound can reach it.
    """
    def check(conn: psycopg.Connection) -> None:
        lock, checked = threading.Lock(), []

        def expire() -> None:
            with lock:  # never once the check is over: the connection may be in use by then
                if not checked:
                    shut_down(conn)

        watchdog = threading.Timer(seconds, expire)
        watchdog.daemon = True
        watchdog.start()
        try:
            ConnectionPool.check_connection(conn)
        finally:
            with lock:
                checked.append(True)
            watchdog.cancel()

    return check
