"""Deadline: a connection whose query outlives it is given up, from another thread, on a real server."""
from __future__ import annotations

import time

import psycopg
import pytest

from sinkframe.pipeline.write.dbconnect import Deadline


def test_a_deadline_gives_up_a_connection_whose_query_outlives_it(pg_dsn):
    """Real PostgreSQL: the query waits longer than the deadline, which ends it with an error."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        started = time.monotonic()
        with pytest.raises(psycopg.OperationalError):
            with Deadline(conn, 0.5) as deadline:
                conn.execute("SELECT pg_sleep(30)")
        assert deadline.expired and conn.broken
        assert time.monotonic() - started < 10
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        with Deadline(conn, 5) as deadline:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert not deadline.expired and not conn.broken
