"""Alert rules from a connector's `alerts:` list, checked against the mapper's tables.

A rule compares one column of one mapper role with a literal (`temperature > 70`)
and keeps a state per key (`device_id`). Parsing checks every rule against the
mapper's `Target` columns before anything runs, so a typo in a column name or a
comparison that could never hold (text ordered, a number against a string) is a
`validate` problem naming its path, never a silent rule that never fires.

`parse_rules` reports every problem of every rule at once, in the
`file:line::$.alerts[i].key: message` form the caller's `where` gives it, like
the rest of `sinkframe validate`.
"""
from __future__ import annotations

import difflib
import math
import operator
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from sinkframe.mapping.base import Target

# What a rule's state is kept per, and the column its `for` is measured in
# (message time, not wall-clock time: a replayed hour takes an hour of `for`).
DEFAULT_KEY = "device_id"
DEFAULT_SEVERITY = "warning"
TIME_COLUMN = "time"

# Each key of a rule, with its description: the one list unknown keys are checked against.
RULE_FIELDS: Mapping[str, str] = {
    "name": "required, unique within the connector: the alert's name in tables, metrics and topics",
    "when": "required: `<column> <op> <literal>`; op one of > >= < <= == !=; a number or a 'string'",
    "clear": "optional: the condition that resolves a firing alert (hysteresis); default: `when` stops holding",
    "for": "optional: how long `when` must hold, in message time, before the alert fires (30s, 5m, 1h30m)",
    "key": f"optional: the column the state is kept per (default {DEFAULT_KEY})",
    "severity": f"optional, free text (default {DEFAULT_SEVERITY})",
    "table": "optional: the mapper role whose rows are checked (default: the mapper's first)",
}

_COMPARE: Mapping[str, Callable[[Any, Any], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
    "==": operator.eq, "!=": operator.ne,
}
_EQUALITY = frozenset(("==", "!="))
# Longest operators first, so that `>=` is not read as `>` followed by `=70`.
_CONDITION = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(>=|<=|==|!=|>|<)\s*(.*?)\s*$")
_NUMBER = re.compile(r"^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$")
_STRING = re.compile(r"^'((?:[^']|'')*)'$")  # SQL style: a quote inside is doubled
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_SECONDS_PER_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

# How each PostgreSQL type a mapper declares can be compared. Anything not listed
# (timestamps, uuid, bytea, arrays) cannot be compared by a rule.
_NUMBER_TYPES = frozenset(("smallint", "integer", "bigint", "int", "int2", "int4", "int8", "real",
                           "double precision", "float4", "float8", "numeric", "decimal"))
_TEXT_TYPES = frozenset(("text", "varchar", "character varying", "char", "character", "bpchar",
                         "citext", "name"))
_BOOLEAN_TYPES = frozenset(("boolean", "bool"))
_JSON_TYPES = frozenset(("json", "jsonb"))


@dataclass(frozen=True, slots=True)
class Condition:
    """`<column> <op> <literal>`; `literal` is an int, float, str or (boolean columns) bool."""

    column: str
    op: str
    literal: int | float | str | bool
    compare: Callable[[Any, Any], bool] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "compare", _COMPARE[self.op])

    def holds(self, value: Any) -> bool:
        return self.compare(value, self.literal)

    def __str__(self) -> str:
        return f"{self.column} {self.op} {_literal_text(self.literal)}"


@dataclass(frozen=True, slots=True)
class AlertRule:
    name: str
    role: str
    when: Condition
    clear: Condition | None = None
    for_seconds: float | None = None  # None: fire on the first row where `when` holds
    key: str = DEFAULT_KEY
    severity: str = DEFAULT_SEVERITY


def parse_condition(text: Any) -> Condition:
    """A Condition from `temperature > 70` or `breaker_status == 'tripped'`; ValueError saying why not."""
    if not isinstance(text, str):
        raise ValueError(f"expected a condition like `temperature > 70`, got {type(text).__name__} {text!r}")
    match = _CONDITION.match(text)
    if match is None:
        raise ValueError(f"cannot read {text!r}: expected `<column> <op> <literal>` "
                         f"with op one of {' '.join(_COMPARE)}")
    column, op, literal_text = match.groups()
    return Condition(column, op, _parse_literal(literal_text))


def _parse_literal(text: str) -> int | float | str | bool:
    if _NUMBER.match(text):
        number = float(text) if any(c in text for c in ".eE") else int(text)
        if isinstance(number, float) and not math.isfinite(number):
            raise ValueError(f"number {text} is out of range")
        return number
    quoted = _STRING.match(text)
    if quoted:
        return quoted.group(1).replace("''", "'")
    if text in ("true", "false"):
        return text == "true"
    raise ValueError(f"cannot read literal {text!r}: expected a number, a 'quoted string' or true/false")


def parse_duration(value: Any) -> float:
    """Seconds in `30s`, `5m`, `1h30m`, `500ms`, `1d`; ValueError saying why not."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(f"expected a duration with a unit such as 30s, 5m or 1h30m, got {value!r}")
    text = value.strip()
    parts = _DURATION_PART.findall(text)
    if not text or "".join(number + unit for number, unit in parts) != text:
        raise ValueError(f"cannot read duration {value!r}: use numbers with units ms, s, m, h, d "
                         "(e.g. 30s, 5m, 1h30m, 500ms)")
    units = [unit for _, unit in parts]
    if len(set(units)) != len(units):
        raise ValueError(f"cannot read duration {value!r}: a unit appears twice")
    seconds = sum(float(number) * _SECONDS_PER_UNIT[unit] for number, unit in parts)
    if seconds <= 0:
        raise ValueError(f"duration {value!r} is zero; leave `for` out to fire at once")
    return seconds


def column_kind(pg_type: str) -> str:
    """number, text, boolean, json or other: what a rule may do with a column of `pg_type`."""
    if pg_type.endswith("[]"):
        return "other"
    base = re.sub(r"\(.*\)", "", pg_type).strip().lower()
    for kind, names in (("number", _NUMBER_TYPES), ("text", _TEXT_TYPES),
                        ("boolean", _BOOLEAN_TYPES), ("json", _JSON_TYPES)):
        if base in names:
            return kind
    return "other"


def condition_problem(condition: Condition, pg_types: Mapping[str, str]) -> str | None:
    """Why `condition` does not fit the columns (name -> pg_type) of its role, or None."""
    pg_type = pg_types.get(condition.column)
    if pg_type is None:
        return (f"unknown column {condition.column!r}{_hint(condition.column, pg_types)}; "
                f"known columns: {', '.join(pg_types)}")
    kind = column_kind(pg_type)
    literal = condition.literal
    described = f"column {condition.column} is {pg_type}"
    if kind == "json":
        return f"{described}: jsonb and json columns cannot be compared"
    if kind == "other":
        return f"{described}: rules compare numbers, text and booleans only"
    if kind in ("text", "boolean") and condition.op not in _EQUALITY:
        return f"{described}: only == and != apply, not {condition.op}"
    if kind == "number" and isinstance(literal, (str, bool)):
        return f"{described}: compare it with a number, not {_literal_text(literal)}"
    if kind == "text" and not isinstance(literal, str):
        return f"{described}: compare it with a 'quoted string', not {_literal_text(literal)}"
    if kind == "boolean" and not isinstance(literal, bool):
        return f"{described}: compare it with true or false, not {_literal_text(literal)}"
    return None


def _literal_text(literal: Any) -> str:
    if isinstance(literal, bool):
        return "true" if literal else "false"
    if isinstance(literal, str):
        return "'" + literal.replace("'", "''") + "'"
    return repr(literal)


def _hint(name: str, known: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class _Problems:
    """Collects problems, each as `where(path)` + message."""

    def __init__(self, where: Callable[[tuple], str]):
        self._where = where
        self.found: list[str] = []

    def add(self, path: tuple, message: str) -> None:
        self.found.append(self._where(path) + message)


def parse_rules(raw: Any, targets: Mapping[str, Target],
                where: Callable[[tuple], str]) -> tuple[list[AlertRule], list[str]]:
    """The rules of a connector's `alerts:` list, and every problem found in it.

    `targets` are the mapper's (role -> Target); `where(("alerts", 0, "when"))`
    gives the prefix of a problem at that path. Only rules without problems are
    returned; a caller should refuse the connector when any problem is found.
    """
    problems = _Problems(where)
    if raw is None:
        return [], []
    if not isinstance(raw, list):
        problems.add(("alerts",), f"expected a list of rules, got {type(raw).__name__}")
        return [], problems.found
    rules: list[AlertRule] = []
    first_index: dict[str, int] = {}
    for index, item in enumerate(raw):
        path = ("alerts", index)
        rule = _parse_rule(item, path, targets, problems)
        name = item.get("name") if isinstance(item, dict) else None
        if isinstance(name, str) and name in first_index:
            problems.add(path + ("name",), f"duplicate alert name {name!r} (first at alerts[{first_index[name]}])")
            continue
        if isinstance(name, str):
            first_index[name] = index
        if rule is not None:
            rules.append(rule)
    return rules, problems.found


def _parse_rule(item: Any, path: tuple, targets: Mapping[str, Target], problems: _Problems) -> AlertRule | None:
    if not isinstance(item, dict):
        problems.add(path, f"expected a rule (a mapping with name and when), got {type(item).__name__}")
        return None
    before = len(problems.found)
    for key in item:
        if key not in RULE_FIELDS:
            problems.add(path + (key,), f"unknown key {key!r}{_hint(str(key), RULE_FIELDS)}; "
                                        f"allowed keys: {', '.join(RULE_FIELDS)}")
    # `clear: null` or `for: null` (a YAML key left empty) means the same as leaving it out.
    item = {key: value for key, value in item.items() if value is not None}
    role, pg_types = _role(item, path, targets, problems)
    name = _required_text(item, "name", path, problems)
    when = _condition(item, "when", path, pg_types, problems, required=True)
    clear = _condition(item, "clear", path, pg_types, problems, required=False)
    for_seconds = _optional(item, "for", path, problems, parse_duration)
    key = _optional_text(item, "key", path, problems, DEFAULT_KEY)
    severity = _optional_text(item, "severity", path, problems, DEFAULT_SEVERITY)
    if pg_types is not None and key is not None:
        _check_key(key, path, pg_types, problems)
    if pg_types is not None and for_seconds is not None and TIME_COLUMN not in pg_types:
        problems.add(path + ("for",), f"table {role} has no {TIME_COLUMN!r} column to measure `for` in")
    if len(problems.found) > before:
        return None
    return AlertRule(name, role, when, clear, for_seconds, key, severity)


def _role(item: dict, path: tuple, targets: Mapping[str, Target],
          problems: _Problems) -> tuple[str | None, dict[str, str] | None]:
    """The rule's role and its columns (name -> pg_type); (role, None) when unknown."""
    if not targets:
        problems.add(path, "the mapper has no tables to check")
        return None, None
    role = item.get("table", next(iter(targets)))
    if role not in targets:
        problems.add(path + ("table",), f"unknown table (mapper role) {role!r}{_hint(str(role), targets)}; "
                                        f"known: {', '.join(targets)}")
        return role, None
    return role, {c.name: c.pg_type for c in targets[role].columns}


def _condition(item: dict, key: str, path: tuple, pg_types: Mapping[str, str] | None,
               problems: _Problems, *, required: bool) -> Condition | None:
    if key not in item:
        if required:
            problems.add(path, f"missing {key!r}: the condition, e.g. `temperature > 70`")
        return None
    try:
        condition = parse_condition(item[key])
    except ValueError as err:
        problems.add(path + (key,), str(err))
        return None
    problem = condition_problem(condition, pg_types) if pg_types is not None else None
    if problem:
        problems.add(path + (key,), problem)
    return condition


def _check_key(key: str, path: tuple, pg_types: Mapping[str, str], problems: _Problems) -> None:
    if key not in pg_types:
        problems.add(path + ("key",), f"unknown key column {key!r}{_hint(key, pg_types)}; "
                            f"known columns: {', '.join(pg_types)}")
    elif column_kind(pg_types[key]) == "json":
        problems.add(path + ("key",), f"key column {key} is {pg_types[key]}: it cannot identify a state")


def _required_text(item: dict, key: str, path: tuple, problems: _Problems) -> str | None:
    if key not in item:
        problems.add(path, f"missing {key!r}")
        return None
    return _optional_text(item, key, path, problems, None)


def _optional_text(item: dict, key: str, path: tuple, problems: _Problems, default: str | None) -> str | None:
    if key not in item:
        return default
    value = item[key]
    if not isinstance(value, str) or not value.strip():
        problems.add(path + (key,), f"expected a non-empty string, got {value!r}")
        return None
    return value


def _optional(item: dict, key: str, path: tuple, problems: _Problems, parse: Callable[[Any], Any]) -> Any:
    if key not in item:
        return None
    try:
        return parse(item[key])
    except ValueError as err:
        problems.add(path + (key,), str(err))
        return None
