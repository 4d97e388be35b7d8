"""The `sinkframe` command. Click functions only parse arguments; the work is elsewhere."""
from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import click

from sinkframe import __version__
from sinkframe.clierrors import exit_on_error
from sinkframe.logs import configure_logging
from sinkframe.settings import Settings

log = logging.getLogger("sinkframe")

plugins_dir_option = click.option(
    "--plugins-dir", "plugins_dirs", multiple=True, type=click.Path(path_type=Path, file_okay=False),
    envvar="SINKFRAME_PLUGINS_DIRS",
    help="A folder of extra mapper plugins (*.py). Repeatable; env: SINKFRAME_PLUGINS_DIRS (':'-separated).")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sinkframe")
@click.option("--log-level", default="INFO", show_default=True, envvar="SINKFRAME_LOG_LEVEL",
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
@click.option("--log-format", default="text", show_default=True, envvar="SINKFRAME_LOG_FORMAT",
              type=click.Choice(["text", "json"]))
def cli(log_level: str, log_format: str) -> None:
    """sinkframe: exactly-once Kafka/Redpanda -> TimescaleDB sink for IoT telemetry."""
    configure_logging(log_level, log_format)


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@plugins_dir_option
@click.option("--brokers", help="Kafka bootstrap servers (default: $REDPANDA_BROKERS).")
@click.option("--database-url", help="libpq URL or DSN (default: $SINKFRAME_DATABASE_URL or $TIMESCALEDB_*).")
@click.option("--schema-dir", "schema_dirs", multiple=True, type=click.Path(path_type=Path),
              help="Schema specs for the connectors' tables (default: ./schema). Repeatable.")
@click.option("--no-schema", is_flag=True, help="Do not create or update tables before consuming.")
@click.option("--plain-postgres", is_flag=True, default=None,
              help="Allow a server without TimescaleDB (plain tables). Also SINKFRAME_PLAIN_POSTGRES=1.")
@click.option("--exit-when-idle", type=float, metavar="SECONDS",
              help="Stop once no message arrived for this long (demos, backfills, benchmarks).")
@click.option("--metrics-port", type=int, envvar="SINKFRAME_METRICS_PORT",
              help="Serve /metrics, /healthz and /readyz on this port (0 or unset: off).")
@click.option("--progress/--no-progress", default=None,
              help="Live status line (default: on when stderr is a terminal, else periodic log lines).")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Run N processes in one consumer group (partition-parallel).")
def run(files, plugins_dirs, brokers, database_url, schema_dirs, no_schema, plain_postgres, exit_when_idle,
        metrics_port, progress, workers):
    """Run the connectors in FILES until SIGTERM/SIGINT."""
    from sinkframe.pipeline.runner import run_connectors

    if workers > 1:
        from sinkframe.pipeline.workers import run_workers

        sys.exit(run_workers(workers, _worker_args(metrics_port)))

    def run_with_monitor():
        settings = Settings.from_env().with_overrides(
            brokers=brokers, database_url=database_url,
            schema_dir=os.pathsep.join(map(str, schema_dirs)) if schema_dirs else None,
            apply_schema=False if no_schema else None, plain_postgres=plain_postgres)
        from sinkframe.ops.runtime import RunMonitor

        monitor = RunMonitor(metrics_port=metrics_port, progress=progress)
        try:
            run_connectors(files, settings, plugins_dirs=plugins_dirs, idle_exit=exit_when_idle,
                           on_started=monitor.started, on_tick=monitor.tick)
        finally:
            monitor.close()

    exit_on_error(run_with_monitor)


def _worker_args(metrics_port: int | None) -> list[str]:
    """The same command line for each worker, minus --workers and --metrics-port.

    N processes cannot share one metrics port, so workers serve no metrics endpoint.
    """
    args = sys.argv[1:]
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg in ("--workers", "--metrics-port"):
            skip = True
            continue
        if arg.startswith(("--workers=", "--metrics-port=")):
            continue
        out.append(arg)
    if metrics_port:
        log.warning("--metrics-port is not served with --workers > 1 (one port cannot serve N processes)")
    return out


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@plugins_dir_option
@click.option("--schema-dir", "schema_dirs", multiple=True, type=click.Path(path_type=Path),
              help="Schema specs to check target tables against (default: ./schema). Repeatable.")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def validate(files, plugins_dirs, schema_dirs, output):
    """Check connector FILES offline; report every error in every file."""
    from sinkframe.validate import validate_files

    reports = validate_files(files, plugins_dirs=plugins_dirs,
                             schema_dir=os.pathsep.join(map(str, schema_dirs)) if schema_dirs else None)
    ok = all(not r.errors for r in reports)
    if output == "json":
        click.echo(json.dumps({"valid": ok, "files": [r.__dict__ for r in reports]}, indent=2))
    else:
        for report in reports:
            for error in report.errors:
                click.echo(error, err=True)
            if report.summary:
                click.echo(f"ok  {report.summary}")
        errors = sum(len(r.errors) for r in reports)
        if errors:
            click.echo(f"{errors} error(s) in {sum(1 for r in reports if r.errors)} of {len(reports)} file(s)",
                       err=True)
    sys.exit(0 if ok else 1)


@cli.command()
@plugins_dir_option
@click.option("-v", "--verbose", is_flag=True, help="Show each plugin's message contract and tables.")
def plugins(plugins_dirs, verbose):
    """List the mapper plugins available and where each came from."""
    from sinkframe.mapping.registry import PluginRegistry

    registry = PluginRegistry(plugins_dirs)
    for name, info in sorted(registry.plugins.items()):
        tables = ", ".join(f"{role}->{t.default_table}" for role, t in info.mapper.targets.items())
        click.echo(f"{name:<16} {info.origin:<24} {tables}  {info.mapper.description}")
        if verbose and info.mapper.__doc__:
            click.echo("    " + "\n    ".join(info.mapper.__doc__.strip().splitlines()) + "\n")
    for error in registry.load_errors:
        click.echo(f"warning: {error}", err=True)


def _mount_optional_commands() -> None:
    """Commands that live with their area (schema, operations, benchmark, demo)."""
    import importlib

    for module_name, attribute in (("sinkframe.schema.cli", "schema_group"),
                                   ("sinkframe.ops.cli", "commands"),
                                   ("sinkframe.bench.cli", "commands"),
                                   ("sinkframe.demo", "commands")):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name and module_name.startswith(err.name):
                continue  # that area is not installed in this build
            raise
        found = getattr(module, attribute)
        for command in found if isinstance(found, (list, tuple)) else [found]:
            cli.add_command(command)


_mount_optional_commands()


def main() -> None:
    cli(prog_name="sinkframe")


if __name__ == "__main__":  # `python -m sinkframe.cli`, used by tests and `--workers`
    main()
