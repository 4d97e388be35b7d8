"""`sinkframe models fit | list | evaluate`: argument parsing only; the work is in sinkframe.models."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from sinkframe.cli.errors import exit_on_error
from sinkframe.cli.ops import Duration, Instant
from sinkframe.config.settings import Settings, setting_option

_files = click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))


@click.group("models")
def models_group() -> None:
    """Models that learn each device's normal behaviour and score the stream (docs/models.md)."""


@models_group.command("fit")
@_files
@click.option("--since", type=Duration(), default="7d", show_default=True, help="Fit on this much history.")
@click.option("--until", type=Instant(), help="End of the history (default: now).")
@setting_option("plugins_dirs")
@setting_option("database_url")
def fit(files, since, until, plugins_dirs, database_url):
    """Fit each model of the connector FILES on its table's history; store a new version."""
    from sinkframe.models.fit import fit_models

    settings = exit_on_error(lambda: Settings.from_env().with_overrides(database_url=database_url))
    results = exit_on_error(lambda: fit_models(files, settings, since=since, until=until, plugins_dirs=plugins_dirs))
    for r in results:
        m = r.metrics
        click.echo(f"{r.connector}/{r.model}: version {r.version} on {r.rows} rows, {m['keys_fitted']} of "
                   f"{m['keys']} keys, alarm above {m['threshold']:.3f} (history's highest {m['score_max']:.3f}) "
                   f"in {r.seconds:.1f}s")


@models_group.command("list")
@click.option("--connector", help="Only this connector's models.")
@setting_option("database_url")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def list_versions(connector, database_url, output):
    """The stored model versions: trained range and fit metrics."""
    from sinkframe.models import store
    from sinkframe.models.fit import connect

    def read():
        settings = Settings.from_env().with_overrides(database_url=database_url)
        with connect(settings, "sinkframe-models-list") as conn:
            return store.list_versions(conn, connector)

    versions = exit_on_error(read)
    if output == "json":
        click.echo(json.dumps([v.__dict__ for v in versions], indent=2, default=str))
        return
    if not versions:
        click.echo("no model versions stored yet (sinkframe models fit)")
    for v in versions:
        m = v.metrics
        click.echo(f"{v.connector}/{v.name} version {v.version}: trained {_time(v.trained_from)} .. "
                   f"{_time(v.trained_until)}, {m.get('rows')} rows, {m.get('keys_fitted')} keys, "
                   f"threshold {m.get('threshold', 0):.3f}, fitted {_time(v.fitted_at)}")


@models_group.command("evaluate")
@_files
@click.option("--truth", type=click.Path(path_type=Path, dir_okay=False, exists=True), required=True,
              help="The ground truth `sinkframe simulate --degrading N --truth FILE` wrote.")
@click.option("--since", type=Instant(), help="Start of the rows to score (default: the truth's window).")
@click.option("--until", type=Instant(), help="End of the rows to score (default: the truth's window).")
@setting_option("plugins_dirs")
@setting_option("database_url")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def evaluate(files, truth, since, until, plugins_dirs, database_url, output):
    """Detection against a simulated run's ground truth: alarmed before the trip, lead, false alarms, cost."""
    from sinkframe.models.evaluate import evaluate_models, render_text

    def run():
        settings = Settings.from_env().with_overrides(database_url=database_url)
        known = json.loads(truth.read_text(encoding="utf-8"))
        return evaluate_models(files, settings, known, since=since, until=until, plugins_dirs=plugins_dirs)

    results = exit_on_error(run)
    if output == "json":
        click.echo(json.dumps([{"connector": r.connector, "model": r.model, "version": r.version,
                                "rescored": r.rescored.as_dict(),
                                "stream": r.stream.as_dict() if r.stream else None} for r in results], indent=2))
        return
    for r in results:
        click.echo(f"{r.connector}/{r.model} version {r.version}, the window's rows scored again:")
        click.echo("  " + render_text(r.rescored).replace("\n", "\n  "))
        if r.stream is not None:
            click.echo("as the sink scored them (sinkframe_scores, per minute):")
            click.echo("  " + render_text(r.stream, cost=False).replace("\n", "\n  "))
    sys.exit(0)


def _time(value) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M")


commands = [models_group]
