"""The alert tables on a real PostgreSQL: DDL, save and load inside a transaction, the read helpers."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from sinkframe.alerts import store
from sinkframe.alerts.engine import AlertState, AlertStatus, Change, Transition, evaluate, keys_of
from sinkframe.alerts.rules import AlertRule, parse_condition
from sinkframe.mapping.batch import RoleColumns

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
COLUMNS = ("time", "device_id", "temperature")
OVERHEAT = AlertRule("overheat", "measurements", parse_condition("temperature > 70"),
                     parse_condition("temperature < 65"), for_seconds=10, severity="critical")


@pytest.fixture
def conn(pg_dsn):
    with psycopg.connect(pg_dsn) as conn:
        with conn.transaction():
            store.create_alert_tables(conn)
        yield conn


def transition(key: str, change: Change, offset: int, value: str = "71.0") -> Transition:
    return Transition("overheat", key, change, "critical", value, T0 + timedelta(seconds=offset),
                      "breakers", 2, offset)


def test_ddl_is_idempotent_and_makes_the_tables_and_index(pg_dsn):
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        store.create_alert_tables(conn)
        store.create_alert_tables(conn)
        tables = {r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        indexes = {r[0] for r in conn.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = %s", (store.ALERTS_TABLE,))}
    assert tables == {"sinkframe_alerts", "sinkframe_alert_states"}
    assert "sinkframe_alerts_latest_idx" in indexes


def test_save_then_load_round_trips_the_states(conn):
    states = {
        ("overheat", "d1"): AlertState(AlertStatus.FIRING, T0, "71.0"),
        ("overheat", "d2"): AlertState(AlertStatus.PENDING, T0 + timedelta(seconds=3), "72.5"),
        ("overheat", "d3"): AlertState(AlertStatus.OK, None, None),
        ("other", "d1"): AlertState(AlertStatus.FIRING, T0, "x"),
    }
    with conn.transaction(), conn.cursor() as cur:
        store.save(cur, "c1", [], states, set(states))
    with conn.transaction(), conn.cursor() as cur:
        loaded = store.load_states(cur, "c1", ["overheat"], ["d1", "d2", "d3", "d4"])
        assert store.load_states(cur, "c2", ["overheat"], ["d1"]) == {}
        assert store.load_states(cur, "c1", [], ["d1"]) == {}
        assert store.load_states(cur, "c1", ["overheat"], []) == {}
    assert loaded == {key: state for key, state in states.items() if key[0] == "overheat"}


def test_save_upserts_only_the_changed_states(conn):
    states = {("overheat", "d1"): AlertState(AlertStatus.FIRING, T0, "71.0"),
              ("overheat", "d2"): AlertState(AlertStatus.FIRING, T0, "75.0")}
    with conn.transaction(), conn.cursor() as cur:
        store.save(cur, "c1", [], states, set(states))
    later = T0 + timedelta(minutes=1)
    states = {("overheat", "d1"): AlertState(AlertStatus.OK, later, "60.0"),
              ("overheat", "d2"): AlertState(AlertStatus.OK, later, "not saved")}
    with conn.transaction(), conn.cursor() as cur:
        store.save(cur, "c1", [], states, {("overheat", "d1")})
        loaded = store.load_states(cur, "c1", ["overheat"], ["d1", "d2"])
    assert loaded == {("overheat", "d1"): AlertState(AlertStatus.OK, later, "60.0"),
                      ("overheat", "d2"): AlertState(AlertStatus.FIRING, T0, "75.0")}


def test_transitions_become_rows_in_order(conn):
    transitions = [transition("d2", Change.FIRING, 5), transition("d1", Change.FIRING, 6),
                   transition("d2", Change.RESOLVED, 9, "64.0")]
    with conn.transaction(), conn.cursor() as cur:
        store.save(cur, "c1", transitions, {}, set())
    rows = conn.execute(
        "SELECT connector, alert, alert_key, state, severity, value, event_time, source_topic, "
        "source_partition, source_offset, created_at IS NOT NULL FROM sinkframe_alerts ORDER BY id").fetchall()
    assert rows == [("c1", t.alert, t.alert_key, t.state.value, t.severity, t.value, t.event_time,
                     t.source_topic, t.source_partition, t.source_offset, True) for t in transitions]


def test_a_rolled_back_batch_leaves_neither_transitions_nor_states(conn):
    with pytest.raises(RuntimeError):
        with conn.transaction(), conn.cursor() as cur:
            store.save(cur, "c1", [transition("d1", Change.FIRING, 1)],
                       {("overheat", "d1"): AlertState(AlertStatus.FIRING, T0, "71.0")}, {("overheat", "d1")})
            raise RuntimeError("the batch's rows failed")
    assert conn.execute("SELECT count(*) FROM sinkframe_alerts").fetchone()[0] == 0
    assert store.current_states(conn) == []


def test_the_state_table_refuses_an_unknown_state(conn):
    with pytest.raises(psycopg.errors.CheckViolation):
        with conn.transaction():
            conn.execute("INSERT INTO sinkframe_alert_states (connector, alert, alert_key, state) "
                         "VALUES ('c', 'a', 'k', 'burning')")


def test_engine_and_store_across_batches_as_the_writer_will_run_them(conn):
    """Load, evaluate, save per batch: a pending state stored by one batch fires in the next."""
    batches = [[(0, "d1", 71.0), (5, "d1", 72.0), (6, "d2", 80.0)],
               [(12, "d1", 73.0), (13, "d2", 60.0), (20, "d1", 60.0)]]
    offset = 0
    for rows in batches:
        data = RoleColumns.from_rows([(T0 + timedelta(seconds=s), k, v) for s, k, v in rows],
                                     list(range(len(rows))), len(COLUMNS))
        with conn.transaction(), conn.cursor() as cur:
            states = store.load_states(cur, "c1", [OVERHEAT.name],
                                       keys_of([OVERHEAT], "measurements", data, COLUMNS))
            transitions, changed = evaluate([OVERHEAT], "measurements", data, COLUMNS,
                                            lambda record, base=offset: (0, base + record), "breakers", states)
            store.save(cur, "c1", transitions, states, changed)
        offset += len(rows)
    rows = conn.execute("SELECT alert_key, state, value, source_offset FROM sinkframe_alerts ORDER BY id").fetchall()
    assert rows == [("d1", "firing", "73.0", 3), ("d1", "resolved", "60.0", 5)]
    assert [(s.alert_key, s.state) for s in store.current_states(conn)] == [("d1", "ok"), ("d2", "ok")]


def test_read_helpers_filter_and_order(conn):
    with conn.transaction(), conn.cursor() as cur:
        store.save(cur, "c1", [transition("d1", Change.FIRING, 1), transition("d2", Change.FIRING, 2)],
                   {("overheat", "d1"): AlertState(AlertStatus.FIRING, T0, "71.0"),
                    ("overheat", "d2"): AlertState(AlertStatus.OK, T0, "60.0")},
                   {("overheat", "d1"), ("overheat", "d2")})
        store.save(cur, "c2", [transition("d9", Change.FIRING, 3)],
                   {("overheat", "d9"): AlertState(AlertStatus.FIRING, T0, "90.0")}, {("overheat", "d9")})
    assert [(s.connector, s.alert_key, s.state) for s in store.current_states(conn)] == [
        ("c1", "d1", "firing"), ("c1", "d2", "ok"), ("c2", "d9", "firing")]
    assert [s.alert_key for s in store.current_states(conn, "c1", firing_only=True)] == ["d1"]
    assert [(t.connector, t.alert_key) for t in store.recent_transitions(conn)] == [
        ("c2", "d9"), ("c1", "d2"), ("c1", "d1")]
    assert [t.alert_key for t in store.recent_transitions(conn, "c1", limit=1)] == ["d2"]
    first = store.recent_transitions(conn, "c2")[0]
    assert (first.state, first.value, first.event_time, first.source_offset) == (
        "firing", "71.0", T0 + timedelta(seconds=3), 3)


def test_read_helpers_before_any_table_exists(pg_dsn):
    with psycopg.connect(pg_dsn) as conn:
        assert store.current_states(conn) == [] and store.recent_transitions(conn) == []
