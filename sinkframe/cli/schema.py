"""`sinkframe schema plan` and `sinkframe schema apply`.

The click commands only parse arguments; `plan_command` and `apply_command` do
the work and return the exit code, so they can be called (and tested) directly.
"""
from __future__ import annotations

import sys
from typing import Sequence, TextIO

import click
import psycopg

from sinkframe.cli.errors import EXIT_ERROR, exit_on_error, report_error
from sinkframe.errors import SinkframeError
from sinkframe.schema.apply import apply_schema
from sinkframe.schema.planner import Plan, plan_schema
from sinkframe.schema.spec import load_schema
from sinkframe.config.settings import Settings, redact_dsn, redact_error, setting_option

# Exit 2 means "changes to apply" here (as terraform plan -detailed-exitcode), so every
# error, a configuration one included, exits 1.
EXIT_OK, EXIT_CHANGES = 0, 2


def plan_command(paths: Sequence[str], *, settings: Settings, tables: Sequence[str] = (),
                 detailed_exitcode: bool = False, out: TextIO | None = None,
                 err: TextIO | None = None) -> int:
    """Print the SQL apply would run (stdout) and drift findings (stderr)."""
    out, err = out or sys.stdout, err or sys.stderr
    try:
        spec = load_schema(paths or settings.schema_paths)
        with _connect(settings) as conn:
            plan = plan_schema(conn, spec, tables=set(tables) or None, plain_postgres=settings.plain_postgres)
            script = plan.as_text(conn)
    except SinkframeError as error:
        return report_error(error, err, config_exit=EXIT_ERROR)
    out.write(script)
    _report_findings(plan, err)
    if plan.empty:
        err.write(f"nothing to apply: the schema on {settings.redacted_dsn} is up to date"
                  + (" (the drift above is left as is)\n" if plan.drift else "\n"))
        return EXIT_OK
    err.write(f"{len(plan.steps)} step(s) to apply on {settings.redacted_dsn}\n")
    return EXIT_CHANGES if detailed_exitcode else EXIT_OK


def apply_command(paths: Sequence[str], *, settings: Settings, tables: Sequence[str] = (),
                  out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Apply the plan and say what was done."""
    out, err = out or sys.stdout, err or sys.stderr
    try:
        spec = load_schema(paths or settings.schema_paths)
        with _connect(settings) as conn:
            plan = apply_schema(conn, spec, tables=set(tables) or None, plain_postgres=settings.plain_postgres)
    except SinkframeError as error:
        return report_error(error, err, config_exit=EXIT_ERROR)
    for step in plan.steps:
        out.write(f"applied: {step.description}\n")
    _report_findings(plan, err)
    summary = f"{len(plan.steps)} step(s) applied" if plan.steps else "schema was already up to date"
    err.write(f"{summary} on {settings.redacted_dsn}\n")
    return EXIT_OK


def _connect(settings: Settings) -> psycopg.Connection:
    try:
        return psycopg.connect(settings.dsn, autocommit=True)
    except psycopg.Error as error:
        raise SinkframeError(f"cannot connect to {redact_dsn(settings.dsn)}: "
                             f"{redact_error(error, settings.dsn)}") from None


def _report_findings(plan: Plan, err: TextIO) -> None:
    for finding in plan.drift:
        err.write(f"drift: {finding}\n")
    if plan.skipped:
        err.write("plain PostgreSQL (no timescaledb extension): skipped these TimescaleDB objects:\n")
        for item in plan.skipped:
            err.write(f"  skipped: {item}\n")


# --- click --------------------------------------------------------------------------------

def _settings(database_url: str | None, plain_postgres: bool | None) -> Settings:
    return Settings.from_env().with_overrides(database_url=database_url, plain_postgres=plain_postgres)


_paths = click.argument("schema_paths", metavar="[SCHEMA_DIR_OR_FILE]...", nargs=-1,
                        type=click.Path(exists=True))
_database_url = setting_option("database_url")
_plain_postgres = setting_option("plain_postgres")
_tables = click.option("--table", "tables", multiple=True, metavar="NAME",
                       help="Only this table (and its continuous aggregates); repeatable.")


@click.group("schema")
def schema_group() -> None:
    """Provision TimescaleDB tables, hypertables and continuous aggregates from schema/ specs."""


@schema_group.command("plan")
@_paths
@_database_url
@_plain_postgres
@_tables
@click.option("--detailed-exitcode", is_flag=True,
              help="Exit 2 when there are changes to apply (0: up to date, 1: error).")
def plan_cli(schema_paths, database_url, plain_postgres, tables, detailed_exitcode) -> None:
    """Print the SQL that apply would run (nothing when up to date) and any drift."""
    settings = exit_on_error(lambda: _settings(database_url, plain_postgres), config_exit=EXIT_ERROR)
    sys.exit(plan_command(schema_paths, settings=settings, tables=tables, detailed_exitcode=detailed_exitcode))


@schema_group.command("apply")
@_paths
@_database_url
@_plain_postgres
@_tables
def apply_cli(schema_paths, database_url, plain_postgres, tables) -> None:
    """Create or update the schema; running it again changes nothing."""
    settings = exit_on_error(lambda: _settings(database_url, plain_postgres), config_exit=EXIT_ERROR)
    sys.exit(apply_command(schema_paths, settings=settings, tables=tables))
