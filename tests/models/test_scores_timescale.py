"""On a real TimescaleDB server, sinkframe_scores is a hypertable with a retention policy; scores merge per minute."""
from __future__ import annotations

import psycopg
import pytest

from sinkframe.models import store

from sinktest.db import query


@pytest.mark.parametrize("copy", [False, True], ids=["arrays", "copy"])
def test_scores_are_a_hypertable_with_retention_and_merge_per_minute(timescale, copy):
    """Both ways of sending them (COPY is what the sink uses on a server that has it); the three
    upserts share one transaction, as a batch's scores share the batch's."""
    if copy and timescale.engine:
        pytest.skip("the embedded engine has no COPY: the sink sends scores as arrays there")
    timescale_dsn = timescale.dsn
    with psycopg.connect(timescale_dsn, autocommit=True) as conn:
        store.create_model_tables(conn)
        store.create_model_tables(conn)  # idempotent: a restart finds them as they are
    hypertables = query(timescale_dsn, "SELECT hypertable_name FROM timescaledb_information.hypertables")
    assert ("sinkframe_scores",) in hypertables
    jobs = query(timescale_dsn, "SELECT config->>'drop_after' FROM timescaledb_information.jobs "
                                "WHERE proc_name = 'policy_retention' AND hypertable_name = 'sinkframe_scores'")
    assert jobs == [(store.SCORES_RETENTION,)]
    minute = 1_780_000_020.0 // 60 * 60
    with psycopg.connect(timescale_dsn) as conn, conn.cursor() as cur:
        store.upsert_scores(cur, "c", "contact_health", 1, ["b-1", "b-2"], [minute, minute], [0.2, 0.9],
                            [False, True], [3, 1], copy=copy)
        store.upsert_scores(cur, "c", "contact_health", 2, ["b-1"], [minute], [0.4], [False], [2], copy=copy)
        store.upsert_scores(cur, "c", "contact_health", 2, ["b-1"], [minute + 60], [0.1], [False], [1], copy=copy)
    found = query(timescale_dsn, "SELECT score_key, extract(epoch FROM bucket)::float8, model_version, score, "
                                 "alarm, rows FROM sinkframe_scores ORDER BY 1, 2")
    assert found == [("b-1", minute, 2, 0.4, False, 5), ("b-1", minute + 60, 2, 0.1, False, 1),
                     ("b-2", minute, 1, 0.9, True, 1)]
