"""The alert state machine over a batch's rows: ok -> pending -> firing -> ok, exactly once per crossing."""
from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from sinkframe.alerts.engine import AlertState, AlertStatus, Change, Transition, evaluate, keys_of
from sinkframe.alerts.rules import AlertRule, parse_condition
from sinkframe.mapping.batch import RoleColumns

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
COLUMNS = ("time", "device_id", "temperature", "breaker_status", "online")
TOPIC = "breakers"

OVERHEAT = AlertRule("overheat", "measurements", parse_condition("temperature > 70"),
                     parse_condition("temperature < 65"), severity="critical")
HOT_NO_CLEAR = AlertRule("hot", "measurements", parse_condition("temperature > 70"))
HOT_FOR_30S = AlertRule("hot30", "measurements", parse_condition("temperature > 70"), for_seconds=30)
TRIPPED = AlertRule("tripped", "measurements", parse_condition("breaker_status == 'tripped'"),
                    parse_condition("breaker_status == 'closed'"))


def columns(rows) -> RoleColumns:
    """Rows of (seconds after T0, device, temperature[, status[, online]]) as a RoleColumns."""
    full = [(T0 + timedelta(seconds=s) if s is not None else None, *rest, *([None] * (4 - len(rest))))
            for s, *rest in rows]
    return RoleColumns.from_rows(full, list(range(len(full))), len(COLUMNS))


def coordinates(record: int) -> tuple[int, int]:
    return 3, 1000 + record  # partition 3, offsets from 1000


def run(rules, rows, states=None, role="measurements"):
    states = {} if states is None else states
    transitions, changed = evaluate(rules, role, columns(rows), COLUMNS, coordinates, TOPIC, states)
    return transitions, changed, states


def changes(transitions) -> list[tuple]:
    """(alert, key, state, value, seconds after T0) of each transition."""
    return [(t.alert, t.alert_key, t.state.value, t.value, (t.event_time - T0).total_seconds())
            for t in transitions]


def test_a_crossing_fires_once_and_resolves_once_after_clear():
    rows = [(0, "d1", 60.0), (1, "d1", 71.5), (2, "d1", 75.0), (3, "d1", 72.0), (4, "d1", 66.0),
            (5, "d1", 64.0), (6, "d1", 63.0), (7, "d1", 60.0)]
    transitions, changed, states = run([OVERHEAT], rows)
    assert changes(transitions) == [("overheat", "d1", "firing", "71.5", 1), ("overheat", "d1", "resolved", "64.0", 5)]
    assert changed == {("overheat", "d1")}
    assert states == {("overheat", "d1"): AlertState(AlertStatus.OK, T0 + timedelta(seconds=5), "64.0")}


def test_a_transition_carries_what_its_row_of_sinkframe_alerts_needs():
    transitions, _, _ = run([OVERHEAT], [(0, "d1", 60.0), (9, "d1", 80.0)])
    assert transitions == [Transition("overheat", "d1", Change.FIRING, "critical", "80.0",
                                      T0 + timedelta(seconds=9), TOPIC, 3, 1001)]


def test_hysteresis_between_clear_and_when_stays_firing_then_fires_again_after_clearing():
    rows = [(0, "d1", 71.0), (1, "d1", 68.0), (2, "d1", 69.0), (3, "d1", 71.0), (4, "d1", 65.0),
            (5, "d1", 64.9), (6, "d1", 68.0), (7, "d1", 70.5)]
    transitions, _, _ = run([OVERHEAT], rows)
    assert [(c[2], c[4]) for c in changes(transitions)] == [("firing", 0), ("resolved", 5), ("firing", 7)]


def test_without_clear_it_resolves_when_when_stops_holding():
    rows = [(0, "d1", 71.0), (1, "d1", 72.0), (2, "d1", 70.0), (3, "d1", 69.0)]
    transitions, _, _ = run([HOT_NO_CLEAR], rows)
    assert [(c[2], c[4]) for c in changes(transitions)] == [("firing", 0), ("resolved", 2)]


def test_for_suppresses_a_short_excursion():
    rows = [(0, "d1", 71.0), (10, "d1", 75.0), (29, "d1", 74.0), (30, "d1", 60.0), (40, "d1", 71.0)]
    transitions, changed, states = run([HOT_FOR_30S], rows)
    assert transitions == []
    assert changed == {("hot30", "d1")}  # pending, then ok, then pending again: saved all the same
    assert states[("hot30", "d1")] == AlertState(AlertStatus.PENDING, T0 + timedelta(seconds=40), "71.0")


def test_for_fires_a_long_excursion_once_when_it_has_held_long_enough():
    rows = [(0, "d1", 71.0), (10, "d1", 75.0), (29, "d1", 74.0), (30, "d1", 72.0), (31, "d1", 73.0),
            (60, "d1", 70.0)]
    transitions, _, states = run([HOT_FOR_30S], rows)
    assert changes(transitions) == [("hot30", "d1", "firing", "72.0", 30), ("hot30", "d1", "resolved", "70.0", 60)]


def test_for_counts_in_message_time_even_from_one_row_to_the_next():
    transitions, _, _ = run([HOT_FOR_30S], [(0, "d1", 71.0), (3600, "d1", 71.0)])
    assert changes(transitions) == [("hot30", "d1", "firing", "71.0", 3600)]


def test_null_values_change_nothing_in_any_state():
    rows = [(0, "d1", None), (1, "d1", 71.0), (2, "d1", None), (3, "d1", None), (4, "d1", 64.0), (5, "d1", None)]
    transitions, _, _ = run([OVERHEAT, HOT_NO_CLEAR], rows)
    assert [(c[0], c[2], c[4]) for c in changes(transitions)] == [
        ("overheat", "firing", 1), ("hot", "firing", 1), ("overheat", "resolved", 4), ("hot", "resolved", 4)]


def test_null_while_pending_neither_resets_nor_fires():
    rows = [(0, "d1", 71.0), (20, "d1", None), (31, "d1", None), (35, "d1", 72.0)]
    transitions, _, _ = run([HOT_FOR_30S], rows)
    assert changes(transitions) == [("hot30", "d1", "firing", "72.0", 35)]


def test_nan_is_no_reading():
    rows = [(0, "d1", math.nan), (1, "d1", 71.0), (2, "d1", math.nan), (3, "d1", 72.0)]
    transitions, _, _ = run([HOT_NO_CLEAR, AlertRule("not70", "measurements", parse_condition("temperature != 70"))],
                            rows)
    assert [(c[0], c[2], c[4]) for c in changes(transitions)] == [("hot", "firing", 1), ("not70", "firing", 1)]


def test_rows_without_a_key_are_skipped():
    transitions, changed, states = run([HOT_NO_CLEAR], [(0, None, 90.0), (1, "d1", 60.0)])
    assert transitions == [] and changed == set() and states == {}


def test_keys_are_independent():
    rows = [(0, "d1", 71.0), (1, "d2", 60.0), (2, "d2", 71.0), (3, "d1", 64.0), (4, "d2", 72.0),
            (5, "d1", 71.0), (6, "d2", 60.0)]
    transitions, changed, _ = run([OVERHEAT], rows)
    assert [(c[1], c[2], c[4]) for c in changes(transitions)] == [
        ("d1", "firing", 0), ("d2", "firing", 2), ("d1", "resolved", 3), ("d1", "firing", 5), ("d2", "resolved", 6)]
    assert changed == {("overheat", "d1"), ("overheat", "d2")}


def test_only_states_that_change_are_reported_changed():
    states = {("overheat", "d9"): AlertState(AlertStatus.FIRING, T0, "80.0")}
    transitions, changed, _ = run([OVERHEAT], [(0, "d1", 50.0), (1, "d9", 68.0), (2, "d2", 71.0)], states)
    assert changed == {("overheat", "d2")}
    assert states[("overheat", "d9")] == AlertState(AlertStatus.FIRING, T0, "80.0")


def test_a_loaded_firing_state_resolves_and_does_not_fire_again():
    states = {("overheat", "d1"): AlertState(AlertStatus.FIRING, T0, "80.0")}
    transitions, _, _ = run([OVERHEAT], [(10, "d1", 75.0), (11, "d1", 60.0)], states)
    assert changes(transitions) == [("overheat", "d1", "resolved", "60.0", 11)]


def test_a_loaded_pending_state_keeps_counting_from_its_since():
    states = {("hot30", "d1"): AlertState(AlertStatus.PENDING, T0, "71.0")}
    transitions, _, _ = run([HOT_FOR_30S], [(25, "d1", 75.0), (30, "d1", 72.0)], states)
    assert changes(transitions) == [("hot30", "d1", "firing", "72.0", 30)]


def test_text_conditions_and_transitions_in_row_order_across_rules():
    rows = [(0, "d1", 71.0, "closed"), (1, "d1", 60.0, "tripped"), (2, "d1", 60.0, "tripped"),
            (3, "d1", 60.0, None), (4, "d1", 60.0, "closed")]
    transitions, _, _ = run([TRIPPED, HOT_NO_CLEAR], rows)
    # Row order first; on one row, the order of the rules.
    assert [(c[0], c[2], c[3], c[4]) for c in changes(transitions)] == [
        ("hot", "firing", "71.0", 0), ("tripped", "firing", "tripped", 1), ("hot", "resolved", "60.0", 1),
        ("tripped", "resolved", "closed", 4)]


def test_clear_on_another_column_than_when():
    rule = AlertRule("hot_until_closed", "measurements", parse_condition("temperature > 70"),
                     parse_condition("breaker_status == 'closed'"))
    rows = [(0, "d1", 71.0, "open"), (1, "d1", 50.0, "open"), (2, "d1", 50.0, None), (3, "d1", 90.0, "closed")]
    transitions, _, _ = run([rule], rows)
    assert [(c[2], c[3], c[4]) for c in changes(transitions)] == [("firing", "71.0", 0), ("resolved", "closed", 3)]


def test_boolean_values_read_as_sql_writes_them():
    rule = AlertRule("offline", "measurements", parse_condition("online == false"))
    transitions, _, _ = run([rule], [(0, "d1", None, None, True), (1, "d1", None, None, False),
                                     (2, "d1", None, None, True)])
    assert [(c[2], c[3]) for c in changes(transitions)] == [("firing", "false"), ("resolved", "true")]


def test_a_non_text_key_column_is_kept_as_text():
    rule = AlertRule("hot", "measurements", parse_condition("temperature > 70"), key="online")
    transitions, _, states = run([rule], [(0, "d1", 71.0, None, True)])
    assert transitions[0].alert_key == "true" and ("hot", "true") in states


def test_a_value_of_the_wrong_type_is_like_null():
    transitions, _, _ = run([HOT_NO_CLEAR], [(0, "d1", "hot"), (1, "d1", 71.0), (2, "d1", "cool")])
    assert [(c[2], c[4]) for c in changes(transitions)] == [("firing", 1)]


def test_rules_of_another_role_and_empty_batches_do_nothing():
    assert run([OVERHEAT], [(0, "d1", 90.0)], role="device_metadata")[:2] == ([], set())
    assert run([OVERHEAT], [])[:2] == ([], set())


def test_keys_of_gives_the_batch_keys_as_text_for_loading():
    rule = AlertRule("hot", "measurements", parse_condition("temperature > 70"), key="online")
    data = columns([(0, "d2", 1.0, None, True), (1, "d1", None), (2, None, 2.0), (3, "d2", 3.0)])
    assert keys_of([OVERHEAT, rule], "measurements", data, COLUMNS) == ["d1", "d2", "true"]
    assert keys_of([OVERHEAT], "other", data, COLUMNS) == []


# -- a restart continues exactly where the run left off -------------------------------------------------

RULES = [OVERHEAT, HOT_NO_CLEAR, HOT_FOR_30S, TRIPPED,
         AlertRule("hot10_hyst", "measurements", parse_condition("temperature >= 71"),
                   parse_condition("temperature <= 60"), for_seconds=10)]

row_strategy = st.tuples(
    st.integers(0, 20),  # seconds since the previous row
    st.sampled_from(["d1", "d2", "d3", None]),
    st.sampled_from([None, 55.0, 60.0, 64.0, 66.0, 70.0, 71.0, 80.0, math.nan]),
    st.sampled_from([None, "closed", "tripped", "open"]),
)


def timed(rows) -> list[tuple]:
    out, seconds = [], 0
    for gap, *rest in rows:
        seconds += gap
        out.append((seconds, *rest))
    return out


def in_batches(rows, cuts) -> list[Transition]:
    """Evaluate batch by batch, keeping only what `store.save` would keep and `load_states` return."""
    stored: dict = {}
    found: list[Transition] = []
    edges = [0, *sorted(cuts), len(rows)]
    for start, end in zip(edges, edges[1:]):
        batch = rows[start:end]
        keys = keys_of(RULES, "measurements", columns(batch), COLUMNS)
        loaded = {k: v for k, v in stored.items() if k[1] in keys}
        transitions, changed = evaluate(RULES, "measurements", columns(batch), COLUMNS,
                                        lambda record, start=start: coordinates(start + record), TOPIC, loaded)
        stored.update({key: loaded[key] for key in changed})
        found.extend(transitions)
    return found


@settings(max_examples=150, deadline=None)
@given(st.lists(row_strategy, max_size=40))
def test_split_at_every_point_gives_the_transitions_of_one_run(raw_rows):
    rows = timed(raw_rows)
    whole = in_batches(rows, [])
    for cut in range(1, len(rows)):
        assert in_batches(rows, [cut]) == whole, cut


@settings(max_examples=100, deadline=None)
@given(st.lists(row_strategy, max_size=40), st.lists(st.integers(0, 40), max_size=6))
def test_any_batching_gives_the_transitions_of_one_run(raw_rows, cuts):
    rows = timed(raw_rows)
    assert in_batches(rows, [c for c in cuts if c <= len(rows)]) == in_batches(rows, [])


@settings(max_examples=100, deadline=None)
@given(st.lists(row_strategy, max_size=40))
def test_each_key_alternates_firing_and_resolved(raw_rows):
    transitions = in_batches(timed(raw_rows), [])
    for rule in RULES:
        for key in ("d1", "d2", "d3"):
            states = [t.state for t in transitions if t.alert == rule.name and t.alert_key == key]
            assert states == [Change.FIRING, Change.RESOLVED] * (len(states) // 2) + [Change.FIRING] * (len(states) % 2)
