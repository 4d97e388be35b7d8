"""What a connection's session keeps is made once per connection, and only trusted once it committed.

The writer sets the idle-in-transaction timeout and creates the upsert stages
once per pooled connection (pipeline/write/session.py). A transaction that
rolls back takes its setting and its temporary tables with it, so the next
write on that same connection must make them again; and the pool's check is
skipped only for a connection whose transaction has just committed.
"""
from __future__ import annotations

import time

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from sinkframe.errors import PartitionFenced
from sinkframe.pipeline.runner import check_pooled_connection
from sinkframe.pipeline.write.dbconnect import abort_connection
from sinkframe.pipeline.write.session import PROVEN_ALIVE_SECONDS, SESSIONS, SessionFacts

from sinktest.db import create_tables, query
from test_poison_write import batch_of, make_writer


def breaker(offset: int, model: str) -> dict:
    return {"device_id": f"breaker-{offset % 2}", "timestamp": 1_700_000_000 + offset,
            "measurements": {"temperature": 20.0}, "metadata": {"model": model}}


def test_a_fact_is_known_only_after_its_transaction_commits():
    facts, conn = SessionFacts(), psycopg.Connection.__new__(psycopg.Connection)
    facts.pending(conn, "stage")
    assert not facts.knows(conn, "stage") and not facts.proven_alive(conn)
    facts.rolled_back(conn)
    facts.committed(conn)
    assert not facts.knows(conn, "stage")  # what the rolled-back transaction made is gone
    facts.pending(conn, "stage")
    facts.committed(conn)
    assert facts.knows(conn, "stage") and facts.proven_alive(conn)
    facts.rolled_back(conn)
    assert facts.knows(conn, "stage") and not facts.proven_alive(conn)


def test_after_a_fenced_write_rolled_back_the_stage_the_next_write_creates_it_again(pg_dsn):
    create_tables(pg_dsn)
    with ConnectionPool(pg_dsn, min_size=1, max_size=1) as pool:  # one connection: both writes share it
        writer, mapper = make_writer(pool, plugin="smart_breaker")
        with pytest.raises(PartitionFenced):  # expects offset 5 stored: rolled back after the stage was made
            writer.write(batch_of(writer, mapper, [(0, 0, breaker(0, "a"))]), {0: 5})
        outcome = writer.write(batch_of(writer, mapper, [(0, o, breaker(o, f"m{o}")) for o in range(4)]), {0: None})
        # And once that committed, a third write on the connection finds the stage without creating it.
        again = writer.write(batch_of(writer, mapper, [(0, 4, breaker(4, "m4"))]), {0: 4})
    assert outcome.next_offsets == {0: 4} and again.next_offsets == {0: 5}
    assert query(pg_dsn, "SELECT device_id, model FROM device_metadata ORDER BY 1") == \
        [("breaker-0", "m4"), ("breaker-1", "m3")]


def test_the_pool_check_is_skipped_only_right_after_a_commit(pg_dsn):
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("SELECT 1")
        conn.commit()
        SESSIONS.committed(conn)
        abort_connection(conn)  # dead now, but it committed a moment ago: lent without a check
        check_pooled_connection(conn)
        time.sleep(PROVEN_ALIVE_SECONDS + 0.1)
        with pytest.raises(psycopg.OperationalError):  # past the window the check finds it dead
            check_pooled_connection(conn)


def test_the_stage_is_emptied_at_each_commit_and_does_not_grow_with_the_batches(pg_dsn):
    # Nothing vacuums a temporary table: emptied by the merge's DELETE alone, the stage kept every
    # dead row, growing by each batch (and slowing each merge) for as long as its connection lived.
    create_tables(pg_dsn)
    with ConnectionPool(pg_dsn, min_size=1, max_size=1) as pool:
        writer, mapper = make_writer(pool, plugin="smart_breaker")
        stage = writer._stages["device_metadata"]
        for start in range(0, 600, 30):
            writer.write(batch_of(writer, mapper, [(0, o, breaker(o, f"m{o}")) for o in range(start, start + 30)]),
                         {0: start or None})
        with pool.connection() as conn:  # the same session: its temporary table
            size = conn.execute("SELECT pg_relation_size(%s)", (stage.name,)).fetchone()[0]
    assert size == 0
    assert query(pg_dsn, "SELECT count(*) FROM smart_breaker_data") == [(600,)]
