"""The `sinkframe` command. Click functions only parse arguments; the work is elsewhere.

Options that set a setting come from its declaration (`setting_option`, see
sinkframe/config/settings.py), so their names, help and defaults are said once.
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from sinkframe import __version__
from sinkframe.cli.errors import exit_on_error
from sinkframe.errors import ConfigError
from sinkframe.ops.logs import configure_logging
from sinkframe.config.settings import Settings, setting_option

log = logging.getLogger("sinkframe")

_files = click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sinkframe")
@setting_option("log_level")
@setting_option("log_format")
def cli(log_level: str, log_format: str) -> None:
    """sinkframe: exactly-once Kafka/Redpanda -> TimescaleDB sink for IoT telemetry."""
    configure_logging(log_level, log_format)


@cli.command()
@_files
@setting_option("plugins_dirs")
@setting_option("brokers")
@setting_option("database_url")
@setting_option("schema_dir")
@setting_option("apply_schema")
@setting_option("plain_postgres")
@click.option("--exit-when-idle", type=float, metavar="SECONDS",
              help="Stop once no message arrived for this long (demos, backfills, benchmarks).")
@setting_option("metrics_port")
@click.option("--progress/--no-progress", default=None,
              help="Live status line (default: on when stderr is a terminal, else periodic log lines).")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Run N processes in one consumer group (partition-parallel).")
def run(files, plugins_dirs, brokers, database_url, schema_dir, apply_schema, plain_postgres, exit_when_idle,
        metrics_port, progress, workers):
    """Run the connectors in FILES until SIGTERM/SIGINT."""
    from sinkframe.pipeline.runner import run_connectors

    if workers > 1:
        from sinkframe.pipeline.workers import run_workers

        sys.exit(run_workers(workers, _worker_args(metrics_port)))

    def run_with_monitor():
        settings = Settings.from_env().with_overrides(
            brokers=brokers, database_url=database_url, schema_dir=schema_dir, apply_schema=apply_schema,
            plain_postgres=plain_postgres)
        from sinkframe.ops.runtime import RunMonitor

        monitor = RunMonitor(metrics_port=metrics_port, progress=progress, metrics_host=settings.metrics_host,
                             summary_every=settings.progress_interval)
        try:
            run_connectors(files, settings, plugins_dirs=plugins_dirs, idle_exit=exit_when_idle,
                           on_created=monitor.started, on_tick=monitor.tick)
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
@_files
@setting_option("plugins_dirs")
@setting_option("schema_dir")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def validate(files, plugins_dirs, schema_dir, output):
    """Check connector FILES offline, their tables against the schema specs; report every error in every file."""
    from sinkframe.config.validate import validate_files

    reports = validate_files(files, plugins_dirs=plugins_dirs, schema_dir=schema_dir)
    ok = all(not r.errors for r in reports)
    if output == "json":
        click.echo(json.dumps({"valid": ok, "files": [r.__dict__ for r in reports]}, indent=2))
    else:
        for report in reports:
            for line in report.errors + report.notes:
                click.echo(line, err=True)
            if report.summary:
                click.echo(f"ok  {report.summary}")
        errors = sum(len(r.errors) for r in reports)
        if errors:
            skipped = " (and checks that could not run: the 'not checked' lines)" if any(r.notes for r in reports) else ""
            click.echo(f"{errors} error(s) in {sum(1 for r in reports if r.errors)} of {len(reports)} file(s){skipped}",
                       err=True)
    sys.exit(0 if ok else 1)


@cli.command()
@setting_option("plugins_dirs")
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


@cli.command(hidden=True)
@click.option("--root", type=click.Path(path_type=Path, file_okay=False, exists=True), default=".",
              show_default=True, help="The sinkframe checkout whose docs to regenerate.")
@click.option("--check", is_flag=True, help="Write nothing; exit 1 when a generated part is stale.")
def docs(root, check):
    """Regenerate docs/tables.md and README.md's settings table from their sources (for contributors)."""
    generated = exit_on_error(lambda: generated_docs(root))
    stale = [path for path, text in generated.items() if path.read_text(encoding="utf-8") != text]
    for path in stale:
        if not check:
            path.write_text(generated[path], encoding="utf-8")
        click.echo(f"{'stale' if check else 'wrote'}: {path}", err=True)
    sys.exit(1 if check and stale else 0)


SETTINGS_BEGIN = "<!-- settings: generated by `sinkframe docs` from sinkframe/config/settings.py; do not edit -->"
SETTINGS_END = "<!-- end of generated settings -->"


def generated_docs(root: Path) -> dict[Path, str]:
    """What the generated docs of the checkout at `root` should say: {path: whole text}.

    docs/tables.md from schema/ and configs/ (defaults, not this shell's environment);
    README.md's settings table, between its markers, from SETTINGS and the variables
    the shipped files read.
    """
    from sinkframe.config.connector import load_connector
    from sinkframe.mapping.registry import PluginRegistry
    from sinkframe.pipeline.runner import build_mapper, resolve_targets
    from sinkframe.schema.spec import load_schema
    from sinkframe.schema.tablesdoc import tables_markdown
    from sinkframe.config.settings import settings_table

    root = Path(root)
    registry = PluginRegistry()
    configs = sorted((root / "configs").glob("*.yaml"))
    connectors = [load_connector(path, env={}) for path in configs]
    bound = [(c, resolve_targets(c, build_mapper(c, registry))) for c in connectors]
    tables = tables_markdown(load_schema(root / "schema", env={}), bound, root=root)
    readme_path = root / "README.md"
    readme = readme_path.read_text(encoding="utf-8")
    try:
        head, rest = readme.split(SETTINGS_BEGIN, 1)
        _old, tail = rest.split(SETTINGS_END, 1)
    except ValueError:
        raise ConfigError(f"{readme_path}: the settings markers are missing ({SETTINGS_BEGIN} ... "
                          f"{SETTINGS_END})") from None
    section = settings_table() + "\n" + _variables_table(configs + sorted((root / "schema").glob("*.yaml")), root)
    return {root / "docs" / "tables.md": tables,
            readme_path: f"{head}{SETTINGS_BEGIN}\n{section}{SETTINGS_END}{tail}"}


def _variables_table(files: list[Path], root: Path) -> str:
    from sinkframe.config.yamlfile import variable_references

    uses: dict[tuple[str, str | None], dict[str, list[str]]] = {}
    for path in files:
        for ref in variable_references(path):
            keys = uses.setdefault((ref.variable, ref.default), {})
            keys.setdefault(str(ref.parts[-1]), []).append(path.relative_to(root).as_posix())
    rows = ["The shipped connector files and schema specs read these variables (`${VAR:-default}`):", "",
            "| variable | sets | default |", "|---|---|---|"]
    for (variable, default), keys in sorted(uses.items()):
        sets = "; ".join(f"`{key}` in {', '.join(paths)}" for key, paths in keys.items())
        rows.append(f"| `{variable}` | {sets} | {f'`{default}`' if default is not None else ''} |")
    return "\n".join(rows) + "\n"


def _mount_command_groups() -> None:
    """The commands of the other modules of this package (imported here: they import nothing of main)."""
    from sinkframe.cli import alerts, bench, demo, init, models, ops, schema, tenants

    for command in (init.init_cli, schema.schema_group, *tenants.commands, *ops.commands, *alerts.commands,
                    *bench.commands, *demo.commands, *models.commands):
        cli.add_command(command)


_mount_command_groups()


def main() -> None:
    cli(prog_name="sinkframe")
