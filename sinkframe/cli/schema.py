"""`sinkframe schema plan` and `sinkframe schema apply`.

The click commands only parse arguments; `plan_command` and `apply_command` do
the work and return the exit code, so they can be called (and tested) directly.

Both cover the public schema first, then every registered tenant's schema
(`sinkframe tenants add`), each with its own retention, so a change to the specs
(a new column, a new table) reaches every tenant in the same run.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence, TextIO

import click
import psycopg

from sinkframe.cli.errors import EXIT_ERROR, exit_on_error, report_error
from sinkframe.errors import SinkframeError
from sinkframe.mapping.registry import PluginRegistry
from sinkframe.schema.apply import apply_schema
from sinkframe.schema.planner import Plan, plan_schema
from sinkframe.schema.sources import load_specs, origin_lines
from sinkframe.config.settings import Settings, redact_dsn, redact_error, setting_option
from sinkframe.tenants.provision import TenantPlan, apply_tenant_objects, plan_tenant_objects
from sinkframe.tenants.registry import load_tenants

# Exit 2 means "changes to apply" here (as terraform plan -detailed-exitcode), so every
# error, a configuration one included, exits 1.
EXIT_OK, EXIT_CHANGES = 0, 2


def plan_command(paths: Sequence[str], *, settings: Settings, tables: Sequence[str] = (),
                 detailed_exitcode: bool = False, out: TextIO | None = None,
                 err: TextIO | None = None, plugins_dirs: Sequence[Path] = ()) -> int:
    """Print the SQL apply would run (stdout); where each table's spec comes from and drift findings (stderr)."""
    out, err = out or sys.stdout, err or sys.stderr
    selected = set(tables) or None
    try:
        spec = load_specs(paths or settings.schema_paths, PluginRegistry(plugins_dirs))
        with connect_database(settings) as conn:
            plan = plan_schema(conn, spec, tables=selected, plain_postgres=settings.plain_postgres)
            script = plan.as_text(conn)
            tenants = [plan_tenant_objects(conn, spec, tenant, tables=selected,
                                           plain_postgres=settings.plain_postgres) for tenant in load_tenants(conn)]
            scripts = [_tenant_script(t, conn) for t in tenants if not t.empty]
    except SinkframeError as error:
        return report_error(error, err, config_exit=EXIT_ERROR)
    out.write("\n".join(filter(None, [script, *scripts])))
    err.writelines(f"{line}\n" for line in origin_lines(spec, selected))
    _report_findings(plan, err)
    for tenant in tenants:
        _report_tenant_findings(tenant, err)
    steps = len(plan.steps) + sum(t.step_count for t in tenants)
    where = _where(settings, tenants)
    if not steps:
        drift = plan.drift or any(t.objects.drift for t in tenants)
        err.write(f"nothing to apply: the schema on {where} is up to date"
                  + (" (the drift above is left as is)\n" if drift else "\n"))
        return EXIT_OK
    err.write(f"{steps} step(s) to apply on {where}\n")
    return EXIT_CHANGES if detailed_exitcode else EXIT_OK


def apply_command(paths: Sequence[str], *, settings: Settings, tables: Sequence[str] = (),
                  out: TextIO | None = None, err: TextIO | None = None, plugins_dirs: Sequence[Path] = ()) -> int:
    """Apply the plan and say what was done."""
    out, err = out or sys.stdout, err or sys.stderr
    selected = set(tables) or None
    tenants: list[TenantPlan] = []
    try:
        spec = load_specs(paths or settings.schema_paths, PluginRegistry(plugins_dirs))
        with connect_database(settings) as conn:
            plan = apply_schema(conn, spec, tables=selected, plain_postgres=settings.plain_postgres)
            for step in plan.steps:
                out.write(f"applied: {step.description}\n")
            for tenant in load_tenants(conn):
                done = apply_tenant_objects(conn, spec, tenant, tables=selected,
                                            plain_postgres=settings.plain_postgres)
                tenants.append(done)
                for description in done.descriptions():
                    out.write(f"applied: tenant {tenant.name}: {description}\n")
    except SinkframeError as error:
        return report_error(error, err, config_exit=EXIT_ERROR)
    _report_findings(plan, err)
    for tenant in tenants:
        _report_tenant_findings(tenant, err)
    steps = len(plan.steps) + sum(t.step_count for t in tenants)
    summary = f"{steps} step(s) applied" if steps else "schema was already up to date"
    err.write(f"{summary} on {_where(settings, tenants)}\n")
    return EXIT_OK


def connect_database(settings: Settings) -> psycopg.Connection:
    """An autocommit connection (apply manages its own transactions), or an error that names the server."""
    try:
        return psycopg.connect(settings.dsn, autocommit=True)
    except psycopg.Error as error:
        raise SinkframeError(f"cannot connect to {redact_dsn(settings.dsn)}: "
                             f"{redact_error(error, settings.dsn)}") from None


def _where(settings: Settings, tenants: list[TenantPlan]) -> str:
    if not tenants:
        return settings.redacted_dsn
    return f"{settings.redacted_dsn} (public and {len(tenants)} tenant schema(s))"


def _tenant_script(tenant: TenantPlan, conn: psycopg.Connection) -> str:
    return f"-- tenant {tenant.tenant.name} (schema {tenant.tenant.schema})\n{tenant.as_text(conn)}"


def _report_findings(plan: Plan, err: TextIO) -> None:
    for finding in plan.drift:
        err.write(f"drift: {finding}\n")
    if plan.skipped:
        err.write("plain PostgreSQL (no timescaledb extension): skipped these TimescaleDB objects:\n")
        for item in plan.skipped:
            err.write(f"  skipped: {item}\n")


def _report_tenant_findings(tenant: TenantPlan, err: TextIO) -> None:
    name = tenant.tenant.name
    for finding in tenant.objects.drift:
        err.write(f"tenant {name}: drift: {finding}\n")
    if tenant.objects.skipped:
        # The same list as public's, above; once is enough.
        err.write(f"tenant {name}: skipped {len(tenant.objects.skipped)} TimescaleDB object(s) "
                  "(plain PostgreSQL)\n")


# --- click --------------------------------------------------------------------------------

def _settings(database_url: str | None, plain_postgres: bool | None) -> Settings:
    return Settings.from_env().with_overrides(database_url=database_url, plain_postgres=plain_postgres)


_paths = click.argument("schema_paths", metavar="[SCHEMA_DIR_OR_FILE]...", nargs=-1,
                        type=click.Path(exists=True))
_database_url = setting_option("database_url")
_plain_postgres = setting_option("plain_postgres")
_plugins_dirs = setting_option("plugins_dirs")
_tables = click.option("--table", "tables", multiple=True, metavar="NAME",
                       help="Only this table (and its continuous aggregates); repeatable.")


@click.group("schema")
def schema_group() -> None:
    """Provision TimescaleDB tables, hypertables and continuous aggregates from the specs: the project's
    (schema/, SINKFRAME_SCHEMA_DIR), then those the plugins ship (in public and every registered tenant's schema)."""


@schema_group.command("plan")
@_paths
@_database_url
@_plain_postgres
@_tables
@_plugins_dirs
@click.option("--detailed-exitcode", is_flag=True,
              help="Exit 2 when there are changes to apply (0: up to date, 1: error).")
def plan_cli(schema_paths, database_url, plain_postgres, tables, plugins_dirs, detailed_exitcode) -> None:
    """Print the SQL that apply would run (nothing when up to date), the spec each table comes from, and any
    drift."""
    settings = exit_on_error(lambda: _settings(database_url, plain_postgres), config_exit=EXIT_ERROR)
    sys.exit(plan_command(schema_paths, settings=settings, tables=tables, detailed_exitcode=detailed_exitcode,
                          plugins_dirs=plugins_dirs))


@schema_group.command("apply")
@_paths
@_database_url
@_plain_postgres
@_tables
@_plugins_dirs
def apply_cli(schema_paths, database_url, plain_postgres, tables, plugins_dirs) -> None:
    """Create or update the schema; running it again changes nothing."""
    settings = exit_on_error(lambda: _settings(database_url, plain_postgres), config_exit=EXIT_ERROR)
    sys.exit(apply_command(schema_paths, settings=settings, tables=tables, plugins_dirs=plugins_dirs))
