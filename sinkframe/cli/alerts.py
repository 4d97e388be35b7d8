"""`sinkframe alerts`: the alert states and recent transitions of some connectors, read-only.

The click command parses arguments; `read_alerts` reads the database and
`render_text` / `as_dict` print what it found. Both tables are read in one
read-only REPEATABLE READ transaction, so the states and the transitions shown
are of the same commit. A database no connector has alerted in has no alert
tables yet: that is an empty listing (`store.current_states` checks first).
A routed connector's states and transitions are its tenants' (stored under
`connector/tenant`): they are listed with the connector, with a tenant column.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import click
import psycopg

from sinkframe.alerts import store
from sinkframe.alerts.engine import AlertStatus
from sinkframe.alerts.rules import DEFAULT_SEVERITY
from sinkframe.cli.errors import exit_on_error
from sinkframe.config.connector import ConnectorConfig
from sinkframe.config.settings import Settings, setting_option
from sinkframe.errors import SinkframeError
from sinkframe.ops.health import error_line


@dataclass
class ConnectorAlerts:
    connector: str
    severities: dict[str, str]  # alert -> severity, from the rules in the connector file
    states: list[store.StoredState] = field(default_factory=list)
    transitions: list[store.StoredTransition] = field(default_factory=list)  # newest first

    def severity(self, alert: str) -> str | None:
        """The rule's severity; for a rule no longer in the file, that of its latest transition shown."""
        if alert in self.severities:
            return self.severities[alert]
        return next((t.severity for t in self.transitions if t.alert == alert), None)


def severities(connector: ConnectorConfig) -> dict[str, str]:
    """alert -> severity of the connector's rules as written (they are checked by `validate`, not here)."""
    return {rule["name"]: rule.get("severity") or DEFAULT_SEVERITY for rule in connector.alerts
            if isinstance(rule, dict) and isinstance(rule.get("name"), str)}


def read_alerts(connectors: Sequence[ConnectorConfig], settings: Settings, *, firing_only: bool,
                limit: int) -> list[ConnectorAlerts]:
    """Per connector: its stored states (firing ones only if `firing_only`) and latest transitions."""
    try:
        conn = psycopg.connect(settings.dsn, connect_timeout=5, application_name="sinkframe-alerts")
    except psycopg.Error as err:
        raise SinkframeError(f"cannot connect to the database ({settings.redacted_dsn}): "
                             f"{error_line(err, settings.dsn)}") from None
    found = [ConnectorAlerts(c.name, severities(c)) for c in connectors]
    with conn:
        conn.read_only = True
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        try:
            with conn.transaction():
                for item in found:
                    item.states = store.current_states(conn, item.connector, firing_only=firing_only)
                    item.transitions = store.recent_transitions(conn, item.connector, limit=limit)
        except psycopg.Error as err:
            raise SinkframeError(f"reading the alert tables ({settings.redacted_dsn}): "
                                 f"{error_line(err, settings.dsn)}") from None
    return found


def as_dict(found: Sequence[ConnectorAlerts], *, firing_only: bool) -> dict:
    """What `-o json` prints: the tables' own column names, times as ISO-8601 in UTC."""
    return {"firing_only": firing_only, "connectors": [{
        "connector": item.connector,
        "states": [{**_plain(s), "severity": item.severity(s.alert)} for s in item.states],
        "transitions": [_plain(t) for t in item.transitions],
    } for item in found]}


def _plain(row) -> dict:
    return {**{key: value.astimezone(timezone.utc).isoformat() if isinstance(value, datetime) else value
               for key, value in asdict(row).items()}, "tenant": store.tenant_of(row.connector)}


def render_text(found: Sequence[ConnectorAlerts], *, firing_only: bool, limit: int) -> str:
    blocks = []
    for item in found:
        lines = [f"connector {item.connector}  {_summary(item.states, firing_only)}"]
        routed = any(store.tenant_of(row.connector) for row in (*item.states, *item.transitions))
        tenant = _tenant_column if routed else (lambda _row: ())
        if item.states:
            lines += _table((*tenant(None), "alert", "key", "state", "severity", "since", "value"), [
                (*tenant(s), s.alert, s.alert_key, s.state, item.severity(s.alert) or "-", _time(s.since),
                 s.value or "-") for s in item.states])
        if item.transitions:
            lines.append(f"  recent transitions (newest first, at most {limit}):")
            lines += _table(("event time", *tenant(None), "alert", "key", "state", "severity", "value", "source"), [
                (_time(t.event_time), *tenant(t), t.alert, t.alert_key, t.state, t.severity, t.value or "-",
                 f"{t.source_topic}[{t.source_partition}]@{t.source_offset}") for t in item.transitions])
        elif limit:
            lines.append("  no transitions")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _tenant_column(row) -> tuple[str]:
    """The tenant cell of a row (the header for None)."""
    if row is None:
        return ("tenant",)
    return (store.tenant_of(row.connector) or "-",)


def _summary(states: Sequence[store.StoredState], firing_only: bool) -> str:
    if firing_only:
        return f"{len(states)} firing" if states else "nothing firing"
    if not states:
        return "no alert states"
    order = (AlertStatus.FIRING, AlertStatus.PENDING, AlertStatus.OK)  # what needs attention first
    counts = {status.value: sum(1 for s in states if s.state == status.value) for status in order}
    return ", ".join(f"{n} {status}" for status, n in counts.items() if n)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    return ["  " + "  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip()
            for row in (headers, *rows)]


def _time(value: datetime | None) -> str:
    return value.astimezone(timezone.utc).isoformat(timespec="seconds") if value else "-"


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--firing", "firing_only", is_flag=True, help="Only the keys whose rule is firing now.")
@click.option("--limit", type=click.IntRange(min=0), default=20, show_default=True,
              help="Recent transitions to show per connector.")
@setting_option("database_url")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def alerts(files, firing_only, limit, database_url, output):
    """Alert states (key, alert, state, since, value) and recent transitions of the connectors in FILES."""
    from sinkframe.pipeline.runner import load_connectors

    def read():
        connectors = load_connectors(files)
        settings = Settings.from_env().with_overrides(database_url=database_url)
        return read_alerts(connectors, settings, firing_only=firing_only, limit=limit)

    found = exit_on_error(read)
    if output == "json":
        click.echo(json.dumps(as_dict(found, firing_only=firing_only), indent=2))
    else:
        click.echo(render_text(found, firing_only=firing_only, limit=limit))


commands = [alerts]
