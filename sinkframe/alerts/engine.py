"""The alert state machine, run over a batch's rows in Kafka order. Pure: no I/O.

Per (rule, key) the state goes ok -> pending (only with `for`) -> firing -> ok:

- ok, `when` holds: firing at once, or pending since the row's message time.
- pending, `when` holds: firing once it has held for `for_seconds` of message
  time; pending, `when` does not hold: back to ok (a short excursion).
- firing, `clear` holds (without `clear`: `when` no longer holds): ok, and a
  'resolved' transition.

Only ok -> firing and firing -> ok are transitions (rows of `sinkframe_alerts`);
every change of state, pending included, is in `changed`, so that the caller
saves it in the same transaction and a restart continues where this run ended.
A NULL (or NaN, or a value of the wrong type) in the column a row is checked on
changes nothing: a missing reading is not a recovery.

Speed: most rows of a batch are of keys that are ok and do not cross. One
comprehension finds the rows where `when` holds; only the rows of keys that
cross in the batch or were not ok before it go through the state machine.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, Callable, Mapping, Sequence

from sinkframe.alerts.rules import TIME_COLUMN, AlertRule, Condition
from sinkframe.mapping.batch import RoleColumns


class AlertStatus(str, Enum):
    """Where a (rule, key) is; the value is what `sinkframe_alert_states.state` holds."""

    OK = "ok"
    PENDING = "pending"
    FIRING = "firing"

    def __str__(self) -> str:
        return self.value


class Change(str, Enum):
    """What a transition did; the value is what `sinkframe_alerts.state` holds."""

    FIRING = "firing"
    RESOLVED = "resolved"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class AlertState:
    """The state of one (rule, key): all a run needs to continue after a restart.

    `since` is the message time the state was entered (for pending: when `when`
    began to hold, which is what `for` is measured from); `value` the value of
    the row that made the change, as text.
    """

    status: AlertStatus = AlertStatus.OK
    since: datetime | None = None
    value: str | None = None


@dataclass(frozen=True, slots=True)
class Transition:
    """One row of `sinkframe_alerts` (less the connector, which the store adds)."""

    alert: str
    alert_key: str
    state: Change
    severity: str
    value: str
    event_time: datetime | None
    source_topic: str
    source_partition: int
    source_offset: int


StateKey = tuple[str, str]  # (rule name, alert key)
_OK, _PENDING, _FIRING = AlertStatus.OK, AlertStatus.PENDING, AlertStatus.FIRING


def evaluate(rules: Sequence[AlertRule], role: str, columns: RoleColumns, column_names: Sequence[str],
             coordinates: Callable[[int], tuple[int, int]], topic: str,
             states: dict[StateKey, AlertState]) -> tuple[list[Transition], set[StateKey]]:
    """Run the rules of `role` over its rows; return the transitions and the states that changed.

    `columns` are the role's rows (`Target.columns` order, named by
    `column_names`), in Kafka order within each partition; `coordinates(record_index)`
    gives a row's (partition, offset). `states` holds the current state of
    every (rule name, key) the rows touch (a missing one is ok) and is updated
    in place. Transitions come out in row order.
    """
    position = {name: i for i, name in enumerate(column_names)}
    found: list[tuple[int, int, Transition]] = []
    changed: set[StateKey] = set()
    for order, rule in enumerate(rules):
        if rule.role != role or not len(columns):
            continue
        run = _RuleRun(rule, columns, position, coordinates, topic, states)
        run.run()
        found.extend((row, order, transition) for row, transition in run.transitions)
        changed.update((rule.name, key) for key in run.changed)
    found.sort(key=lambda item: (item[0], item[1]))
    return [transition for _, _, transition in found], changed


def keys_of(rules: Sequence[AlertRule], role: str, columns: RoleColumns,
            column_names: Sequence[str]) -> list[str]:
    """Every key the rules of `role` keep a state for in these rows, as text (for `store.load_states`)."""
    position = {name: i for i, name in enumerate(column_names)}
    keys: set[str] = set()
    for key_column in {rule.key for rule in rules if rule.role == role}:
        keys.update(_key_text(key) for key in set(columns.columns[position[key_column]]) if key is not None)
    return sorted(keys)


def value_text(value: Any) -> str:
    """A value as `sinkframe_alerts.value` shows it: booleans as SQL writes them, the rest as str()."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _key_text(key: Any) -> str:
    return key if type(key) is str else value_text(key)


def _is_nan(value: Any) -> bool:
    return value != value


def _as_text(keys: list) -> list:
    """The key column with its values as text (states are kept per text key, as stored).

    A column holds one type (binary COPY would refuse anything else), so its
    first value tells whether it needs converting.
    """
    first = next((key for key in keys if key is not None), None)
    if first is None or type(first) is str:
        return keys
    return [None if key is None else value_text(key) for key in keys]


# The rows where `value <op> literal` holds: a comprehension per operator, because
# it runs over every row of the batch and an inline comparison is several times
# cheaper than a call per row. NULLs never hold.
_ROWS_WHERE: Mapping[str, Callable[[list, Any], list[int]]] = {
    ">": lambda values, literal: [row for row, v in enumerate(values) if v is not None and v > literal],
    ">=": lambda values, literal: [row for row, v in enumerate(values) if v is not None and v >= literal],
    "<": lambda values, literal: [row for row, v in enumerate(values) if v is not None and v < literal],
    "<=": lambda values, literal: [row for row, v in enumerate(values) if v is not None and v <= literal],
    "==": lambda values, literal: [row for row, v in enumerate(values) if v == literal],
    "!=": lambda values, literal: [row for row, v in enumerate(values) if v is not None and v != literal],
}


def _rows_where(condition: Condition, values: list) -> list[int]:
    try:
        return _ROWS_WHERE[condition.op](values, condition.literal)
    except TypeError:  # some value of another type than the column's: compare row by row
        return [row for row, value in enumerate(values) if _RuleRun.test(condition, value)]


class _RuleRun:
    """One rule over one batch's rows: what it finds is in `transitions` and `changed`."""

    def __init__(self, rule: AlertRule, columns: RoleColumns, position: Mapping[str, int],
                 coordinates: Callable[[int], tuple[int, int]], topic: str,
                 states: dict[StateKey, AlertState]):
        self.rule = rule
        self.keys = _as_text(columns.columns[position[rule.key]])
        self.when_values = columns.columns[position[rule.when.column]]
        clear = rule.clear
        self.clear_values = columns.columns[position[clear.column]] if clear else self.when_values
        self.times = columns.columns[position[TIME_COLUMN]] if TIME_COLUMN in position else None
        self.record_index = columns.record_index
        self.coordinates = coordinates
        self.topic = topic
        self.states = states
        self.transitions: list[tuple[int, Transition]] = []  # (row, transition), in row order
        self.changed: set[str] = set()  # keys whose state changed
        # This rule's states by key, so the loop looks a key up without building a tuple.
        self.mine = {key: state for (name, key), state in states.items() if name == rule.name}

    def run(self) -> None:
        hits = _rows_where(self.rule.when, self.when_values)
        active = {key for key, state in self.mine.items() if state.status is not _OK}
        if not hits and not active:
            return
        # Only the keys that are not ok, or cross in this batch, can change: their rows, in order.
        keys, mine = self.keys, self.mine
        watched = active.union([keys[row] for row in hits])
        watched.discard(None)
        crossing = set(hits)
        for row in [row for row, key in enumerate(keys) if key in watched]:
            key = keys[row]
            state = mine.get(key)
            if (state is None or state.status is _OK) and row not in crossing:
                continue  # ok and `when` does not hold: nothing to do, and the most common row
            self.step(row, key, state)

    def step(self, row: int, key: str, state: AlertState | None) -> None:
        status = _OK if state is None else state.status
        if status is _OK:
            self.crossed(row, key, self.when_values[row])
        elif status is _FIRING:
            self.check_clear(row, key)
        else:
            self.check_pending(row, key, state)

    def crossed(self, row: int, key: str, value: Any) -> None:
        """ok, and `when` holds on this row."""
        if _is_nan(value):  # NaN != literal is true, but NaN is no reading
            return
        if self.rule.for_seconds is None:
            self.fire(row, key, value)
            return
        since = self.event_time(row)
        if since is not None:  # without a message time, `for` cannot start counting
            self.set(key, AlertState(_PENDING, since, value_text(value)))

    def check_pending(self, row: int, key: str, state: AlertState) -> None:
        outcome = self.test(self.rule.when, self.when_values[row])
        if outcome is None:
            return
        value = self.when_values[row]
        now = self.event_time(row)
        if not outcome:
            self.set(key, AlertState(_OK, now, value_text(value)))
        elif now is None:
            return
        elif state.since is None:  # a stored pending state without its start: count from here
            self.set(key, AlertState(_PENDING, now, value_text(value)))
        elif (now - state.since).total_seconds() >= self.rule.for_seconds:
            self.fire(row, key, value)

    def check_clear(self, row: int, key: str) -> None:
        value = self.clear_values[row]
        if self.rule.clear is not None:
            resolved = self.test(self.rule.clear, value)
        else:
            holds = self.test(self.rule.when, value)
            resolved = None if holds is None else not holds
        if resolved:
            self.set(key, AlertState(_OK, self.event_time(row), value_text(value)))
            self.transitions.append((row, self.transition(row, key, Change.RESOLVED, value)))

    def fire(self, row: int, key: str, value: Any) -> None:
        self.set(key, AlertState(_FIRING, self.event_time(row), value_text(value)))
        self.transitions.append((row, self.transition(row, key, Change.FIRING, value)))

    @staticmethod
    def test(condition: Condition, value: Any) -> bool | None:
        """Whether `condition` holds on `value`; None when the value cannot tell (NULL, NaN, wrong type)."""
        if value is None or _is_nan(value):
            return None
        try:
            return condition.compare(value, condition.literal)
        except TypeError:
            return None

    def set(self, key: str, state: AlertState) -> None:
        self.mine[key] = self.states[(self.rule.name, key)] = state
        self.changed.add(key)

    def event_time(self, row: int) -> datetime | None:
        return None if self.times is None else self.times[row]

    def transition(self, row: int, key: str, change: Change, value: Any) -> Transition:
        partition, offset = self.coordinates(self.record_index[row])
        rule = self.rule
        return Transition(rule.name, key, change, rule.severity, value_text(value), self.event_time(row),
                          self.topic, partition, offset)
