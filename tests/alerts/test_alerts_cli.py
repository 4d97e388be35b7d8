"""`sinkframe alerts` through click's CliRunner, against a real PostgreSQL filled with `store.save`."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
from click.testing import CliRunner

from sinkframe.alerts import store
from sinkframe.alerts.engine import AlertState, AlertStatus, Change, Transition
from sinkframe.cli import cli
from sinkframe.devservices import free_port

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
CONNECTOR = """\
name: smart-breaker
topic: breakers
mapper: {plugin: smart_breaker}
alerts:
  - {name: overheat, when: temperature > 70, clear: temperature < 65, severity: critical}
  - {name: low_voltage, when: voltage_phase_a < 207, for: 30s}
"""
STATES = {
    ("overheat", "breaker-1"): AlertState(AlertStatus.FIRING, T0 + timedelta(seconds=20), "71.5"),
    ("overheat", "breaker-2"): AlertState(AlertStatus.OK, T0 + timedelta(seconds=40), "64.0"),
    ("low_voltage", "breaker-3"): AlertState(AlertStatus.PENDING, T0 + timedelta(seconds=50), "205.1"),
}
TRANSITIONS = [  # in commit order
    Transition("overheat", "breaker-2", Change.FIRING, "critical", "72.0", T0 + timedelta(seconds=10),
               "breakers", 1, 100),
    Transition("overheat", "breaker-1", Change.FIRING, "critical", "71.5", T0 + timedelta(seconds=20),
               "breakers", 0, 200),
    Transition("overheat", "breaker-2", Change.RESOLVED, "critical", "64.0", T0 + timedelta(seconds=40),
               "breakers", 1, 101),
]


@pytest.fixture
def connector_file(tmp_path):
    path = tmp_path / "smart_breaker.yaml"
    path.write_text(CONNECTOR)
    return path


@pytest.fixture
def filled(pg_dsn):
    """The alert tables with the states and transitions above, and another connector's that must not show."""
    with psycopg.connect(pg_dsn) as conn:
        with conn.transaction(), conn.cursor() as cur:
            store.create_alert_tables(cur)
            store.save(cur, "smart-breaker", TRANSITIONS, STATES, set(STATES))
            other = {("overheat", "elsewhere"): AlertState(AlertStatus.FIRING, T0, "99")}
            store.save(cur, "other", [Transition("overheat", "elsewhere", Change.FIRING, "critical", "99", T0,
                                                 "other-topic", 0, 1)], other, set(other))
    return pg_dsn


def invoke(*args: str):
    return CliRunner().invoke(cli, ["alerts", *args], env={"SINKFRAME_DATABASE_URL": None})


def test_text_lists_every_state_and_the_transitions_newest_first(filled, connector_file):
    result = invoke(str(connector_file), "--database-url", filled)

    assert result.exit_code == 0, result.output
    assert result.stdout == """\
connector smart-breaker  1 firing, 1 pending, 1 ok
  alert        key        state    severity  since                      value
  low_voltage  breaker-3  pending  warning   2024-05-01T12:00:50+00:00  205.1
  overheat     breaker-1  firing   critical  2024-05-01T12:00:20+00:00  71.5
  overheat     breaker-2  ok       critical  2024-05-01T12:00:40+00:00  64.0
  recent transitions (newest first, at most 20):
  event time                 alert     key        state     severity  value  source
  2024-05-01T12:00:40+00:00  overheat  breaker-2  resolved  critical  64.0   breakers[1]@101
  2024-05-01T12:00:20+00:00  overheat  breaker-1  firing    critical  71.5   breakers[0]@200
  2024-05-01T12:00:10+00:00  overheat  breaker-2  firing    critical  72.0   breakers[1]@100
"""


def test_firing_shows_only_the_firing_keys_and_limit_cuts_the_transitions(filled, connector_file):
    result = invoke(str(connector_file), "--database-url", filled, "--firing", "--limit", "1")

    assert result.exit_code == 0, result.output
    assert result.stdout == """\
connector smart-breaker  1 firing
  alert     key        state   severity  since                      value
  overheat  breaker-1  firing  critical  2024-05-01T12:00:20+00:00  71.5
  recent transitions (newest first, at most 1):
  event time                 alert     key        state     severity  value  source
  2024-05-01T12:00:40+00:00  overheat  breaker-2  resolved  critical  64.0   breakers[1]@101
"""


def test_json_shows_what_the_tables_hold(filled, connector_file):
    result = invoke(str(connector_file), "--database-url", filled, "-o", "json")

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["firing_only"] is False
    [connector] = report["connectors"]
    assert connector["connector"] == "smart-breaker"
    states = [{k: s[k] for k in ("alert", "alert_key", "state", "severity", "since", "value")}
              for s in connector["states"]]
    assert states == [
        {"alert": alert, "alert_key": key, "state": state.status.value,
         "severity": "critical" if alert == "overheat" else "warning",
         "since": state.since.isoformat(), "value": state.value}
        for (alert, key), state in sorted(STATES.items())]
    assert all(s["connector"] == "smart-breaker" and s["updated_at"] for s in connector["states"])
    transitions = [{k: t[k] for k in ("alert", "alert_key", "state", "severity", "value", "event_time",
                                      "source_topic", "source_partition", "source_offset")}
                   for t in connector["transitions"]]
    assert transitions == [
        {"alert": t.alert, "alert_key": t.alert_key, "state": t.state.value, "severity": t.severity,
         "value": t.value, "event_time": t.event_time.isoformat(), "source_topic": t.source_topic,
         "source_partition": t.source_partition, "source_offset": t.source_offset}
        for t in reversed(TRANSITIONS)]
    ids = [t["id"] for t in connector["transitions"]]
    assert ids == sorted(ids, reverse=True)

    firing = json.loads(invoke(str(connector_file), "--database-url", filled, "-o", "json", "--firing").stdout)
    assert firing["firing_only"] is True
    assert [(s["alert"], s["alert_key"]) for s in firing["connectors"][0]["states"]] == [("overheat", "breaker-1")]


def test_without_alert_tables_the_listing_is_empty(pg_dsn, connector_file):
    text = invoke(str(connector_file), "--database-url", pg_dsn)
    assert text.exit_code == 0, text.output
    assert text.stdout == "connector smart-breaker  no alert states\n  no transitions\n"
    assert text.stderr == ""

    firing = invoke(str(connector_file), "--database-url", pg_dsn, "--firing")
    assert firing.stdout == "connector smart-breaker  nothing firing\n  no transitions\n"

    report = json.loads(invoke(str(connector_file), "--database-url", pg_dsn, "-o", "json").stdout)
    assert report == {"firing_only": False,
                      "connectors": [{"connector": "smart-breaker", "states": [], "transitions": []}]}


def test_an_unreachable_database_is_one_error_line(connector_file):
    result = invoke(str(connector_file), "--database-url",
                    f"postgresql://sinkframe:secret@127.0.0.1:{free_port()}/nothing")

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: cannot connect to the database (")
    assert "secret" not in result.stderr and "Traceback" not in result.output


def test_a_bad_connector_file_is_a_config_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(CONNECTOR + "alerts_topik: x\n")

    result = invoke(str(path), "--database-url", "postgresql://127.0.0.1:1/unused")

    assert result.exit_code == 2
    assert "alerts_topik" in result.stderr and "did you mean 'alerts_topic'" in result.stderr
