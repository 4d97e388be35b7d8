"""`sinkframe tenants add|plan|list|remove`.

The click commands only parse arguments; `add_command`, `list_command` and
`remove_command` do the work and return the exit code. A tenant name is checked
first, before any setting, spec or connection is looked at, so a refused name
has nothing run. Output follows `sinkframe schema`: the SQL of a plan or the
`applied:` lines on stdout, findings and the one-line summary on stderr.
"""
from __future__ import annotations

import json
import os
import shlex
import sys
from typing import Mapping, TextIO

import click
import psycopg

from sinkframe.cli.errors import EXIT_ERROR, exit_on_error, report_error
from sinkframe.cli.schema import connect_database
from sinkframe.config.settings import Settings, setting_option
from sinkframe.errors import ConfigError, SinkframeError
from sinkframe.schema.spec import load_schema
from sinkframe.tenants.listing import render_statuses, tenant_statuses
from sinkframe.tenants.provision import TenantPlan, apply_tenant, plan_tenant
from sinkframe.tenants.registry import check_name, find_tenant, role_for, schema_for
from sinkframe.tenants.remove import plan_removal, remove_tenant

EXIT_OK = 0


def read_password(variable: str | None, env: Mapping[str, str] | None = None) -> str | None:
    """The password in environment variable `variable` (a variable, so it is in no command line or history)."""
    if variable is None:
        return None
    value = (os.environ if env is None else env).get(variable)
    if not value:
        raise ConfigError(f"--password-env {variable}: that environment variable is not set or is empty; "
                          "set it to the tenant role's password, or leave --password-env out for a role "
                          "without one (for servers that trust local connections or use certificates)")
    return value


def add_command(name: str, *, settings: Settings, retention: str | None = None, password_env: str | None = None,
                dry_run: bool = False, env: Mapping[str, str] | None = None, out: TextIO | None = None,
                err: TextIO | None = None) -> int:
    """Provision tenant `name` (or, with `dry_run`, print the SQL it would run)."""
    out, err = out or sys.stdout, err or sys.stderr
    try:
        check_name(name)
        password = read_password(password_env, env)
        spec = load_schema(settings.schema_paths)
        with connect_database(settings) as conn:
            options = dict(retention=retention, plain_postgres=settings.plain_postgres, password=password,
                           password_from=password_env)
            if dry_run:
                plan = plan_tenant(conn, spec, name, **options)
                out.write(plan.as_text(conn))
            else:
                plan = apply_tenant(conn, spec, name, **options)
                for description in plan.descriptions():
                    out.write(f"applied: {description}\n")
    except SinkframeError as error:
        return report_error(error, err)
    _report_findings(plan, err)
    where = settings.redacted_dsn
    what = (f"schema {plan.tenant.schema}, role {plan.tenant.role}, "
            f"retention {plan.tenant.retention or 'from the specs'}")
    if plan.empty:
        err.write(f"tenant {name} is {'' if dry_run else 'already '}up to date on {where} ({what})\n")
    elif dry_run:
        err.write(f"tenant {name}: {plan.step_count} step(s) to apply on {where} ({what})\n")
    else:
        err.write(f"tenant {name}: {plan.step_count} step(s) applied on {where} ({what})\n")
    return EXIT_ERROR if plan.findings else EXIT_OK


def _report_findings(plan: TenantPlan, err: TextIO) -> None:
    for finding in plan.objects.drift:
        err.write(f"drift: {finding}\n")
    if plan.objects.skipped:
        err.write("plain PostgreSQL (no timescaledb extension): skipped these TimescaleDB objects:\n")
        for item in plan.objects.skipped:
            err.write(f"  skipped: {item}\n")
    for finding in plan.findings:
        err.write(f"error: isolation: {finding}\n")


def list_command(*, settings: Settings, output: str = "text", out: TextIO | None = None,
                 err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    try:
        with connect_database(settings) as conn:
            statuses = tenant_statuses(conn)
    except SinkframeError as error:
        return report_error(error, err)
    if output == "json":
        out.write(json.dumps([s.as_dict() for s in statuses], indent=2) + "\n")
    else:
        out.write(render_statuses(statuses))
    if not statuses:
        err.write(f"no tenants on {settings.redacted_dsn} (`sinkframe tenants add NAME` adds one)\n")
    return EXIT_OK


def remove_command(name: str, *, settings: Settings, yes: bool = False, drop_data: bool = False,
                   out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Remove tenant `name`; without `yes`, print what that would do and do nothing."""
    out, err = out or sys.stdout, err or sys.stderr
    try:
        check_name(name)
        with connect_database(settings) as conn:
            recorded = _recorded(conn, name)
            if not yes:
                actions = plan_removal(conn, name, drop_data=drop_data)
                out.write("\n".join(a.as_text(conn) for a in actions))
            else:
                actions = remove_tenant(conn, name, drop_data=drop_data)
    except SinkframeError as error:
        return report_error(error, err)
    if not yes:
        err.write(f"error: nothing was done: removing tenant {name} needs --yes\n")
        return EXIT_ERROR
    for action in actions:
        out.write(f"done: {action.description}\n")
    schema, role = schema_for(name), role_for(name)
    if drop_data:
        err.write(f"tenant {name} removed with its data (schema {schema} and role {role} dropped)\n")
    else:
        retention = f" --retention {shlex.quote(recorded.retention)}" if recorded and recorded.retention else ""
        err.write(f"tenant {name} removed: its rows are kept in schema {schema} and role {role} can no longer "
                  f"log in; `sinkframe tenants add {name}{retention}` brings it back, "
                  f"`sinkframe tenants remove {name} --drop-data --yes` deletes it\n")
    return EXIT_OK


def _recorded(conn, name: str):
    try:
        return find_tenant(conn, name)
    except psycopg.Error as err:
        raise SinkframeError(f"reading the tenant registry: {str(err).strip()}") from err


# --- click --------------------------------------------------------------------------------

def _settings(database_url=None, plain_postgres=None, schema_dir=None) -> Settings:
    return Settings.from_env().with_overrides(database_url=database_url, plain_postgres=plain_postgres,
                                              schema_dir=schema_dir)


_name = click.argument("name")
_database_url = setting_option("database_url")
_provision_options = [
    click.option("--retention", metavar="INTERVAL",
                 help="Drop this tenant's raw data older than this ('90 days'); default: what is recorded for "
                      "it, else each hypertable's drop_after in the specs; `spec`: back to the specs'."),
    click.option("--password-env", metavar="VAR",
                 help="Set the tenant role's password from this environment variable (default: no password)."),
    setting_option("schema_dir"),
    _database_url,
    setting_option("plain_postgres"),
]


def _provision(command):
    for option in reversed(_provision_options):
        command = option(command)
    return command


@click.group("tenants")
def tenants_group() -> None:
    """Tenants: a schema tenant_NAME per customer, from the same specs, and a role that reads only it."""


@tenants_group.command("add")
@_name
@_provision
@click.option("--dry-run", is_flag=True, help="Print the SQL it would run and change nothing (as `tenants plan`).")
def add_cli(name, retention, password_env, schema_dir, database_url, plain_postgres, dry_run) -> None:
    """Create tenant NAME, or bring it up to date; running it again changes nothing."""
    exit_on_error(lambda: check_name(name))
    settings = exit_on_error(lambda: _settings(database_url, plain_postgres, schema_dir))
    sys.exit(add_command(name, settings=settings, retention=retention, password_env=password_env, dry_run=dry_run))


@tenants_group.command("plan")
@_name
@_provision
def plan_cli(name, retention, password_env, schema_dir, database_url, plain_postgres) -> None:
    """Print the SQL that `tenants add NAME` would run (nothing when it is up to date)."""
    exit_on_error(lambda: check_name(name))
    settings = exit_on_error(lambda: _settings(database_url, plain_postgres, schema_dir))
    sys.exit(add_command(name, settings=settings, retention=retention, password_env=password_env, dry_run=True))


@tenants_group.command("list")
@_database_url
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def list_cli(database_url, output) -> None:
    """Each tenant with its schema, role, retention and the rows in each of its tables."""
    settings = exit_on_error(lambda: _settings(database_url))
    sys.exit(list_command(settings=settings, output=output))


@tenants_group.command("remove")
@_name
@click.option("--yes", is_flag=True, help="Really remove it (without: print what it would do).")
@click.option("--drop-data", is_flag=True,
              help="Also drop its schema with every row in it, and its role (default: keep them; the role "
                   "loses LOGIN).")
@_database_url
def remove_cli(name, yes, drop_data, database_url) -> None:
    """Unregister tenant NAME and take its login; its data stays unless --drop-data."""
    exit_on_error(lambda: check_name(name))
    settings = exit_on_error(lambda: _settings(database_url))
    sys.exit(remove_command(name, settings=settings, yes=yes, drop_data=drop_data))


commands = [tenants_group]
