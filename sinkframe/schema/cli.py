"""`sinkframe schema plan` and `sinkframe schema apply`.

The click commands only parse arguments; `plan_command` and `apply_command` do
the work and return the exit code, so they can be called (and tested) directly.
"""
from __future__ import annotations

import sys
from typing import Sequence, TextIO

import click
import psycopg

from sinkframe.errors import ConfigError, SinkframeError
from sinkframe.schema.apply import apply_schema
from sinkframe.schema.planner import Plan, plan_schema
from sinkframe.schema.spec import load_schema
from sinkframe.settings import Settings, redact_dsn, redact_error

EXIT_OK, EXIT_ERROR, EXIT_CHANGES = 0, 1, 2


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
        return _report_error(error, err)
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
        return _report_error(error, err)
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


def _report_error(error: SinkframeError, err: TextIO) -> int:
    lines = error.problems if isinstance(error, ConfigError) else [str(error)]
    for line in lines:
        err.write(f"error: {line}\n")
    return EXIT_ERROR


# --- click --------------------------------------------------------------------------------

def _settings(database_url: str | None, plain_postgres: bool) -> Settings:
    settings = Settings.from_env()
    return settings.with_overrides(database_url=database_url, plain_postgres=plain_postgres or None)


_paths = click.argument("schema_paths", metavar="[SCHEMA_DIR_OR_FILE]...", nargs=-1,
                        type=click.Path(exists=True))
_database_url = click.option("--database-url", metavar="URL",
                             help="Database to use (default: SINKFRAME_DATABASE_URL / TIMESCALEDB_*).")
_plain_postgres = click.option("--plain-postgres", is_flag=True, default=False,
                               help="Allow a server without TimescaleDB: create plain tables and indexes "
                                    "only (also SINKFRAME_PLAIN_POSTGRES=1).")
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
    try:
        settings = _settings(database_url, plain_postgres)
    except ConfigError as error:
        sys.exit(_report_error(error, sys.stderr))
    sys.exit(plan_command(schema_paths, settings=settings, tables=tables, detailed_exitcode=detailed_exitcode))


@schema_group.command("apply")
@_paths
@_database_url
@_plain_postgres
@_tables
def apply_cli(schema_paths, database_url, plain_postgres, tables) -> None:
    """Create or update the schema; running it again changes nothing."""
    try:
        settings = _settings(database_url, plain_postgres)
    except ConfigError as error:
        sys.exit(_report_error(error, sys.stderr))
    sys.exit(apply_command(schema_paths, settings=settings, tables=tables))
