"""A real TimescaleDB server for the tests and the benchmark, found or started the same way by both.

In order:
1. a server the user names (the tests read `SINKFRAME_TEST_TIMESCALE_DSN`, the
   benchmark `SINKFRAME_BENCH_TIMESCALE_DSN` first), for example the
   `timescale/timescaledb` image;
2. the project's start script, `../shared/timescaledb/start` beside the
   repository (`SINKFRAME_TIMESCALEDB_START` names another): it builds TimescaleDB
   for the machine's PostgreSQL once, starts a server on loopback (port 5442) and
   prints its DSN. A server already answering on that port is used as it is,
   without calling the script (the script would wait on its lock, which the running
   server holds);
3. none: the caller falls back (the tests to the embedded engine, the benchmark
   to plain PostgreSQL only).

The server is left running afterwards: other test runs and shells may use it.
"""
from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from sinkframe.config.settings import redact_dsn
from sinkframe.errors import SinkframeError

START_SCRIPT_ENV = "SINKFRAME_TIMESCALEDB_START"
REPOSITORY = Path(__file__).resolve().parents[2]
DEFAULT_START_SCRIPT = Path("..") / "shared" / "timescaledb" / "start"  # relative to the repository
DEFAULT_PORT = 5442
# The first run on a machine builds the extension (a minute or two on two cores, more on a busy one).
START_TIMEOUT_SECONDS = 900


@dataclass(frozen=True)
class TimescaleServer:
    """A reachable server with the timescaledb extension available."""

    dsn: str  # its admin database: a role that may create databases
    server_version: str
    timescaledb_version: str
    source: str  # how it was found, for reports

    def describe(self) -> str:
        return f"TimescaleDB {self.timescaledb_version} on PostgreSQL {self.server_version} ({self.source})"

    def database_dsn(self, dbname: str) -> str:
        params = conninfo_to_dict(self.dsn)
        params["dbname"] = dbname
        return make_conninfo("", **params)

    def bindir(self) -> Path | None:
        """The server's own binaries (initdb, pg_ctl, postgres with the extension), when they are on
        this machine: the script's private copy of PostgreSQL. None for a remote or containerised one."""
        with psycopg.connect(self.dsn, connect_timeout=5) as conn:
            try:
                row = conn.execute("SELECT setting FROM pg_config WHERE name = 'BINDIR'").fetchone()
            except psycopg.errors.InsufficientPrivilege:
                return None
        found = Path(row[0]) if row else None
        return found if found and (found / "pg_ctl").exists() else None


def start_script() -> Path:
    given = os.environ.get(START_SCRIPT_ENV)
    return Path(given) if given else (REPOSITORY / DEFAULT_START_SCRIPT)


def probe(dsn: str, source: str) -> TimescaleServer | None:
    """The server at `dsn` if it answers and offers the timescaledb extension, else None."""
    try:
        with psycopg.connect(dsn, connect_timeout=3) as conn:
            row = conn.execute("SELECT current_setting('server_version'), default_version "
                               "FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()
    except psycopg.OperationalError:
        return None
    if row is None:
        raise SinkframeError(f"the server at {redact_dsn(dsn)} ({source}) has no timescaledb extension")
    return TimescaleServer(dsn, row[0].split()[0], row[1], source)


def find_timescale_server(given_dsn: str | None = None, *, port: int = DEFAULT_PORT) -> TimescaleServer | None:
    """The user's server (`given_dsn`), else the start script's (started if it is not running), else None."""
    if given_dsn:
        found = probe(given_dsn, "given")
        if found is None:
            raise SinkframeError(f"no TimescaleDB server answers at {redact_dsn(given_dsn)}")
        return found
    script = start_script()
    if not script.exists():
        return None
    dsn = f"host=127.0.0.1 port={port} user=postgres dbname=postgres"
    source = f"{script}, port {port}"
    found = probe(dsn, source)
    if found is not None:
        return found
    return probe(run_start_script(script, port), source)


def run_start_script(script: Path, port: int, datadir: Path | None = None) -> str:
    """Run the start script; return the DSN it prints."""
    args = [str(script), str(port), *([str(datadir)] if datadir else [])]
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=START_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired as err:
        raise SinkframeError(f"{script} did not finish within {START_TIMEOUT_SECONDS} s") from err
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise SinkframeError(f"{script} {port} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return lines[-1]
