"""`sinkframe demo --degrading N`: fit a model on the first half of the simulated day, score the second.

The shipped smart-breaker connector with its documented `models:` block and
`contact_failing` rule enabled (a copy in the demo's folder) ingests the first
half; the model is fitted on it; the second half, in which N contacts fail, is
then scored as it is written. Prints the worst-scored breakers, the alerts
and the detection against the simulator's ground truth.
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


def run_scored_demo(bootstrap: str, dsn: str, settings: Settings, workdir: Path, *, devices: int, seed: int,
                    malformed_rate: float, window: tuple[float, float, float], degrading: int,
                    configs: Sequence[str]) -> None:
    start, end, interval = window
    middle = (start + end) / 2
    if end - start < 48 * 3600:
        click.echo("  note        the model learns from the first half only; with less than a day of it "
                   "healthy breakers can raise false alarms (try --hours 48)")
    fleet = Fleet(devices=devices, seed=seed, malformed_rate=malformed_rate, degrading=degrading,
                  degrade_window=(middle, end))
    scored = workdir / "smart_breaker_scored.yaml"
    scored.write_text(Path(SMART_BREAKER).read_text() + SMART_BREAKER_MODELS)
    paths = [scored if c == SMART_BREAKER else Path(c) for c in configs]
    _ingest(bootstrap, fleet, paths, settings, (start, middle, interval), "first half (history)")
    model = bound_models(load_connectors([scored]), PluginRegistry())[0]
    with connect_to_engine(dsn) as conn:
        conn.autocommit = True
        store.create_model_tables(conn)
        fitted = fit_one(conn, model, datetime.fromtimestamp(start, timezone.utc),
                         datetime.fromtimestamp(middle, timezone.utc))
    click.echo(f"  fitted      {model.spec.name} version {fitted.version} on {fitted.rows} rows "
               f"(alarm above {fitted.metrics['threshold']:.3f})")
    _ingest(bootstrap, fleet, paths, settings, (middle, end, interval), "second half (scored)")
    _print_scores(dsn, model.connector, fleet, middle)


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
