"""What the writer knows of a pooled connection's server session, learnt from transactions that committed.

A batch's write is a chain of round trips, and the server idles during each
one. Three of them only re-establish what a session keeps from one
transaction to the next, so each is made once per connection instead:

- the session's `idle_in_transaction_session_timeout` (why: BatchWriter._prepare_session);
- the temporary tables that keyed rows are COPYed into (copystage.py);
- proof that the connection is alive: the pool checks an idle connection with
  an empty query before lending it, but one whose transaction committed a
  moment ago has just proven itself (HikariCP skips its check within 500 ms of
  the last use for the same reason). A connection that dies within that window
  fails its write's first statement instead, bounded by the write timeout, and
  the write is retried on a new one.

A setting made, or a table created, in a transaction that rolls back is gone
with it, so what a transaction establishes is only `pending` until its commit;
`committed()` makes it known, `rolled_back()` forgets it. Each connection is
used by one thread at a time (the pool lends it to one writer); the lock only
guards the shared dictionaries.
"""
from __future__ import annotations

import threading
import time
import weakref

import psycopg

# A connection whose transaction committed this recently is lent without the pool's check.
PROVEN_ALIVE_SECONDS = 0.5


class SessionFacts:
    def __init__(self):
        self._lock = threading.Lock()
        self._known: weakref.WeakKeyDictionary[psycopg.Connection, set[str]] = weakref.WeakKeyDictionary()
        self._pending: weakref.WeakKeyDictionary[psycopg.Connection, set[str]] = weakref.WeakKeyDictionary()
        self._committed_at: weakref.WeakKeyDictionary[psycopg.Connection, float] = weakref.WeakKeyDictionary()

    def knows(self, conn: psycopg.Connection, fact: str) -> bool:
        with self._lock:
            return fact in self._known.get(conn, ())

    def pending(self, conn: psycopg.Connection, fact: str) -> None:
        """`fact` was established in the transaction now open on `conn`."""
        with self._lock:
            self._pending.setdefault(conn, set()).add(fact)

    def committed(self, conn: psycopg.Connection) -> None:
        with self._lock:
            self._known.setdefault(conn, set()).update(self._pending.pop(conn, ()))
            self._committed_at[conn] = time.monotonic()

    def rolled_back(self, conn: psycopg.Connection) -> None:
        with self._lock:
            self._pending.pop(conn, None)
            self._committed_at.pop(conn, None)

    def proven_alive(self, conn: psycopg.Connection) -> bool:
        """Whether a transaction on `conn` committed within PROVEN_ALIVE_SECONDS."""
        with self._lock:
            at = self._committed_at.get(conn)
        return at is not None and time.monotonic() - at < PROVEN_ALIVE_SECONDS


# One for the process: the pool's check (pipeline/runner.py) and every writer sharing the pool read it.
SESSIONS = SessionFacts()
