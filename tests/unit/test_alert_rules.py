"""Alert rules from a connector's `alerts:` list: parsing, defaults, and every problem reported at once."""
from __future__ import annotations

import pytest

from sinkframe.alerts.rules import (
    AlertRule,
    Condition,
    column_kind,
    parse_condition,
    parse_duration,
    parse_rules,
)
from sinkframe.config.yamlfile import json_path
from sinkframe.mapping.base import Column, Target
from sinkframe_plugins.smart_breaker import SmartBreakerMapper

BREAKER = SmartBreakerMapper.targets
# Column types the built-in mappers do not use, for the type checks.
VARIOUS = {
    "readings": Target("readings", (
        Column("time", "timestamptz"), Column("device_id", "text"), Column("online", "boolean"),
        Column("level", "numeric(6,2)"), Column("code", "varchar(8)"), Column("payload", "jsonb"),
        Column("serial", "uuid"), Column("tags", "text[]"), Column("unit_no", "integer"),
    )),
}


def where(path: tuple) -> str:
    return f"{json_path(path)}: "


def parse(raw, targets=BREAKER):
    return parse_rules(raw, targets, where)


def only_problem(raw, targets=BREAKER) -> str:
    rules, problems = parse(raw, targets)
    assert rules == [] and len(problems) == 1, problems
    return problems[0]


def test_a_full_rule_parses_into_its_fields():
    rules, problems = parse([{
        "name": "overheat", "when": "temperature > 70", "clear": "temperature < 65", "for": "30s",
        "key": "device_id", "severity": "critical", "table": "measurements",
    }])
    assert problems == []
    assert rules == [AlertRule("overheat", "measurements", Condition("temperature", ">", 70),
                               Condition("temperature", "<", 65), 30.0, "device_id", "critical")]


def test_defaults_first_role_device_id_warning_no_clear_no_for():
    rules, problems = parse([{"name": "trip", "when": "breaker_status == 'tripped'"}])
    assert problems == []
    assert rules == [AlertRule("trip", "measurements", Condition("breaker_status", "==", "tripped"))]
    assert (rules[0].key, rules[0].severity, rules[0].clear, rules[0].for_seconds) == \
        ("device_id", "warning", None, None)


def test_no_alerts_key_means_no_rules():
    assert parse(None) == ([], [])
    assert parse([]) == ([], [])


def test_empty_optional_keys_mean_the_default():
    rules, problems = parse([{"name": "low", "when": "voltage_phase_a < 200", "clear": None, "for": None}])
    assert problems == [] and rules[0].clear is None and rules[0].for_seconds is None


@pytest.mark.parametrize("text, expected", [
    ("temperature > 70", Condition("temperature", ">", 70)),
    ("temperature>=70.5", Condition("temperature", ">=", 70.5)),
    ("  voltage_phase_a <  -1e3 ", Condition("voltage_phase_a", "<", -1000.0)),
    ("trip_count <= 3", Condition("trip_count", "<=", 3)),
    ("breaker_status != 'closed'", Condition("breaker_status", "!=", "closed")),
    ("breaker_status == 'it''s open'", Condition("breaker_status", "==", "it's open")),
    ("breaker_status == ''", Condition("breaker_status", "==", "")),
    ("online == true", Condition("online", "==", True)),
])
def test_conditions(text, expected):
    assert parse_condition(text) == expected


def test_a_condition_reads_back_as_written():
    assert str(parse_condition("breaker_status == 'it''s'")) == "breaker_status == 'it''s'"
    assert str(parse_condition("temperature>70")) == "temperature > 70"


@pytest.mark.parametrize("text", ["temperature", "temperature = 70", "temperature => 70", "> 70",
                                  "temperature > ", "temperature > seventy", "temperature > 'open",
                                  "temperature > 1e999", "7temp > 1", 70, None, ["temperature > 70"]])
def test_unreadable_conditions(text):
    with pytest.raises(ValueError):
        parse_condition(text)


@pytest.mark.parametrize("text, seconds", [
    ("30s", 30), ("5m", 300), ("1h", 3600), ("1h30m", 5400), ("500ms", 0.5), ("1.5s", 1.5),
    ("1d", 86400), ("2m30s", 150), ("1h0m5s", 3605),
])
def test_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["30", "30 s", "5x", "s", "", "1h1h", "-5s", "0s", "0ms", 30, 1.5, True, None])
def test_bad_durations(value):
    with pytest.raises(ValueError):
        parse_duration(value)


@pytest.mark.parametrize("pg_type, kind", [
    ("double precision", "number"), ("integer", "number"), ("bigint", "number"), ("numeric(6,2)", "number"),
    ("real", "number"), ("text", "text"), ("varchar(8)", "text"), ("character varying", "text"),
    ("boolean", "boolean"), ("jsonb", "json"), ("json", "json"), ("timestamptz", "other"),
    ("uuid", "other"), ("text[]", "other"),
])
def test_column_kinds(pg_type, kind):
    assert column_kind(pg_type) == kind


# -- problems, each naming its path ------------------------------------------------------------------

def test_unknown_column_lists_the_known_ones_and_suggests_one():
    problem = only_problem([{"name": "hot", "when": "temprature > 70"}])
    assert problem.startswith("$.alerts[0].when: unknown column 'temprature' (did you mean 'temperature'?)")
    assert "known columns: time, device_id, voltage_phase_a" in problem and "trip_count" in problem


def test_unknown_column_in_clear():
    problem = only_problem([{"name": "hot", "when": "temperature > 70", "clear": "temp < 65"}])
    assert problem.startswith("$.alerts[0].clear: unknown column 'temp'")


@pytest.mark.parametrize("when, says", [
    ("breaker_status > 'open'", "column breaker_status is text: only == and != apply, not >"),
    ("breaker_status == 3", "column breaker_status is text: compare it with a 'quoted string', not 3"),
    ("temperature == 'hot'", "column temperature is double precision: compare it with a number, not 'hot'"),
    ("trip_count > true", "column trip_count is integer: compare it with a number, not true"),
    ("extra_measurements == 'x'", "column extra_measurements is jsonb: jsonb and json columns cannot be compared"),
    ("time > 5", "column time is timestamptz: rules compare numbers, text and booleans only"),
])
def test_operator_or_literal_that_does_not_fit_the_column(when, says):
    assert only_problem([{"name": "r", "when": when}]) == f"$.alerts[0].when: {says}"


@pytest.mark.parametrize("when, says", [
    ("online >= true", "column online is boolean: only == and != apply, not >="),
    ("online == 1", "column online is boolean: compare it with true or false, not 1"),
    ("online == 'yes'", "column online is boolean: compare it with true or false, not 'yes'"),
    ("payload != 'x'", "column payload is jsonb: jsonb and json columns cannot be compared"),
    ("serial == 'x'", "column serial is uuid: rules compare numbers, text and booleans only"),
    ("tags == 'x'", "column tags is text[]: rules compare numbers, text and booleans only"),
    ("code < 'b'", "column code is varchar(8): only == and != apply, not <"),
])
def test_type_checks_on_other_column_types(when, says):
    assert only_problem([{"name": "r", "when": when}], VARIOUS) == f"$.alerts[0].when: {says}"


def test_types_that_fit():
    rules, problems = parse([
        {"name": "offline", "when": "online == false"},
        {"name": "level", "when": "level >= 2.5", "clear": "level < 2"},
        {"name": "code", "when": "code == 'E1'", "key": "unit_no"},
    ], VARIOUS)
    assert problems == [] and [r.name for r in rules] == ["offline", "level", "code"]


def test_bad_duration_names_the_for_key():
    problem = only_problem([{"name": "hot", "when": "temperature > 70", "for": "30sec"}])
    assert problem.startswith("$.alerts[0].for: cannot read duration '30sec'")


def test_a_number_for_for_asks_for_a_unit():
    problem = only_problem([{"name": "hot", "when": "temperature > 70", "for": 30}])
    assert problem.startswith("$.alerts[0].for: expected a duration with a unit")


def test_for_on_a_table_without_a_time_column():
    problem = only_problem([{"name": "m", "when": "model == 'x'", "for": "1m", "table": "device_metadata"}])
    assert problem == "$.alerts[0].for: table device_metadata has no 'time' column to measure `for` in"


def test_unknown_keys_in_a_rule_each_named_with_the_allowed_ones():
    rules, problems = parse([{"name": "hot", "when": "temperature > 70", "severty": "critical", "after": "5s"}])
    assert rules == []
    assert problems == [
        "$.alerts[0].severty: unknown key 'severty' (did you mean 'severity'?); "
        "allowed keys: name, when, clear, for, key, severity, table",
        "$.alerts[0].after: unknown key 'after'; allowed keys: name, when, clear, for, key, severity, table",
    ]


def test_duplicate_names_keep_the_first_and_point_at_the_second():
    rules, problems = parse([
        {"name": "hot", "when": "temperature > 70"},
        {"name": "cold", "when": "temperature < 0"},
        {"name": "hot", "when": "temperature > 80"},
    ])
    assert [r.name for r in rules] == ["hot", "cold"]
    assert problems == ["$.alerts[2].name: duplicate alert name 'hot' (first at alerts[0])"]


def test_unknown_role_lists_the_known_ones():
    problem = only_problem([{"name": "hot", "when": "temperature > 70", "table": "measurement"}])
    assert problem == ("$.alerts[0].table: unknown table (mapper role) 'measurement' "
                       "(did you mean 'measurements'?); known: measurements, device_metadata")


def test_unknown_key_column():
    problem = only_problem([{"name": "hot", "when": "temperature > 70", "key": "device"}])
    assert problem.startswith("$.alerts[0].key: unknown key column 'device' (did you mean 'device_id'?); "
                              "known columns: time, device_id")


def test_default_key_column_missing_from_the_table():
    targets = {"t": Target("t", (Column("time", "timestamptz"), Column("sensor", "text"),
                                 Column("level", "real")))}
    problem = only_problem([{"name": "hot", "when": "level > 1"}], targets)
    assert problem.startswith("$.alerts[0].key: unknown key column 'device_id'")


def test_a_jsonb_key_column_cannot_hold_states():
    problem = only_problem([{"name": "r", "when": "level > 1", "key": "payload"}], VARIOUS)
    assert problem == "$.alerts[0].key: key column payload is jsonb: it cannot identify a state"


@pytest.mark.parametrize("rule, problem", [
    ({"when": "temperature > 70"}, "$.alerts[0]: missing 'name'"),
    ({"name": "hot"}, "$.alerts[0]: missing 'when': the condition, e.g. `temperature > 70`"),
    ({"name": "", "when": "temperature > 70"}, "$.alerts[0].name: expected a non-empty string, got ''"),
    ({"name": 7, "when": "temperature > 70"}, "$.alerts[0].name: expected a non-empty string, got 7"),
    ({"name": "hot", "when": "temperature > 70", "severity": ["high"]},
     "$.alerts[0].severity: expected a non-empty string, got ['high']"),
])
def test_required_and_typed_fields(rule, problem):
    assert only_problem([rule]) == problem


def test_not_a_list_or_not_a_mapping():
    assert parse({"name": "hot"}) == ([], ["$.alerts: expected a list of rules, got dict"])
    assert only_problem(["temperature > 70"]) == \
        "$.alerts[0]: expected a rule (a mapping with name and when), got str"


def test_every_problem_of_every_rule_at_once_with_the_good_rules_kept():
    rules, problems = parse([
        {"name": "ok", "when": "temperature > 70"},
        {"name": "bad", "when": "temprature > 70", "clear": "breaker_status < 'x'", "for": "soon",
         "key": "devise", "colour": "red"},
        {"name": "ok", "when": "trip_count > 0", "table": "nope"},
    ])
    assert [r.name for r in rules] == ["ok"]
    paths = [p.split(": ", 1)[0] for p in problems]
    assert paths == ["$.alerts[1].colour", "$.alerts[1].when", "$.alerts[1].clear", "$.alerts[1].for",
                     "$.alerts[1].key", "$.alerts[2].table", "$.alerts[2].name"]


def test_where_decides_the_prefix():
    _, problems = parse_rules([{"name": "hot", "when": "nope > 1"}], BREAKER,
                              lambda path: f"c.yaml:7::{json_path(path)}: ")
    assert problems[0].startswith("c.yaml:7::$.alerts[0].when: unknown column 'nope'")
