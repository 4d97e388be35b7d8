"""`sinkframe demo --degrading N`: fit a model on the simulated history, score the day that follows it.

The shipped smart-breaker connector with its documented `models:` block and
`contact_failing` rule enabled (a copy in the demo's folder) ingests `--hours`
of history; the model is fitted on it; the next day, in which N contacts fail,
is then scored as it is written. Prints the worst-scored breakers, the alerts
and the detection against the simulator's ground truth.

Why the history is `--hours` and the scored part a day after it: the threshold
is the history's highest score plus a margin (models/detector.py). Fitted on a
single day, it is the top of one day's noise, which the healthy breakers' next
day can exceed; whether they do depends on where the days fall in the daily
load cycle, that is on the hour the demo runs. Two days of history leave the
healthy breakers below it at every hour.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import click
import numpy as np

from sinkframe.config.settings import Settings
from sinkframe.devservices import connect_to_engine
from sinkframe.mapping.registry import PluginRegistry
from sinkframe.models import store
from sinkframe.models.evaluate import evaluate, render_text
from sinkframe.models.fit import bound_models, fit_one
from sinkframe.models.spec import SMART_BREAKER_MODELS
from sinkframe.pipeline.runner import load_connectors, run_connectors
from sinkframe.simulator import Fleet, produce

SMART_BREAKER = "configs/smart_breaker.yaml"
SCORED_SECONDS = 86400.0  # the day scored after the history
STEADY_HISTORY_HOURS = 48.0  # less history than this and healthy breakers can alarm, at some hours of the day


def run_scored_demo(bootstrap: str, dsn: str, settings: Settings, workdir: Path, *, devices: int, seed: int,
                    malformed_rate: float, history_hours: float, end: float, interval: float, degrading: int,
                    configs: Sequence[str]) -> None:
    """`history_hours` of traffic to fit on, then the day up to `end` (epoch s) scored."""
    scored_from = end - SCORED_SECONDS
    start = scored_from - history_hours * 3600
    if history_hours < STEADY_HISTORY_HOURS:
        click.echo(f"  note        with less than {STEADY_HISTORY_HOURS:g} h of history healthy breakers can raise "
                   f"false alarms, more or fewer with the hour it runs at (try --hours {STEADY_HISTORY_HOURS:g})")
    fleet = Fleet(devices=devices, seed=seed, malformed_rate=malformed_rate, degrading=degrading,
                  degrade_window=(scored_from, end))
    scored = workdir / "smart_breaker_scored.yaml"
    scored.write_text(Path(SMART_BREAKER).read_text() + SMART_BREAKER_MODELS)
    paths = [scored if c == SMART_BREAKER else Path(c) for c in configs]
    _ingest(bootstrap, fleet, paths, settings, (start, scored_from, interval), f"history ({history_hours:g} h)")
    model = bound_models(load_connectors([scored]), PluginRegistry())[0]
    with connect_to_engine(dsn) as conn:
        conn.autocommit = True
        store.create_model_tables(conn)
        fitted = fit_one(conn, model, datetime.fromtimestamp(start, timezone.utc),
                         datetime.fromtimestamp(scored_from, timezone.utc))
    click.echo(f"  fitted      {model.spec.name} version {fitted.version} on {fitted.rows} rows "
               f"(alarm above {fitted.metrics['threshold']:.3f})")
    _ingest(bootstrap, fleet, paths, settings, (scored_from, end, interval), "scored day")
    _print_scores(dsn, model.connector, fleet, scored_from)


def _ingest(bootstrap: str, fleet: Fleet, paths: list[Path], settings: Settings,
            backfill: tuple[float, float, float], what: str) -> None:
    report = produce(bootstrap, fleet, rate=None, backfill=backfill)
    started = time.monotonic()
    pipeline = run_connectors(paths, settings, idle_exit=3.0)
    consumed = sum(t.stats.messages for t in pipeline.tasks)
    click.echo(f"  {what}: produced {report.sent}, ingested {consumed} messages in "
               f"{time.monotonic() - started:.1f}s")


def _print_scores(dsn: str, connector: str, fleet: Fleet, since: float) -> None:
    with connect_to_engine(dsn) as conn:
        worst = store.worst_keys(conn, connector, since=datetime.fromtimestamp(since, timezone.utc), limit=5)
        found = conn.execute("SELECT score_key, extract(epoch FROM bucket)::float8, alarm FROM sinkframe_scores "
                             "WHERE connector = %s", (connector,)).fetchall()
        alerts = conn.execute("SELECT alert_key, state, event_time FROM sinkframe_alerts WHERE alert = %s "
                              "ORDER BY id", ("contact_failing",)).fetchall()
    click.echo("\nWorst-scored breakers (sinkframe_scores):")
    for w in worst:
        click.echo(f"  {w.score_key:<16} {w.score:.3f}{'  ALARM' if w.alarm else ''}")
    click.echo(f"\nAlerts contact_failing: {len(alerts)} transition(s)")
    for key, state, event_time in alerts[:5]:
        click.echo(f"  {key:<16} {state:<9} {event_time:%Y-%m-%d %H:%M}")
    truth = fleet.truth()
    click.echo("\nAgainst the simulator's ground truth:")
    for fault in truth["degrading"]:
        click.echo(f"  {fault['device_id']} contact of phase {fault['phase']} failing from {fault['onset'][:16]}, "
                   f"trips at {fault['trip'][:16]}")
    if found:
        result = evaluate(truth, [r[0] for r in found], np.array([r[1] for r in found]),
                          np.array([r[2] for r in found]), seconds_scoring=0.0)
        click.echo("  " + render_text(result, cost=False).replace("\n", "\n  "))
