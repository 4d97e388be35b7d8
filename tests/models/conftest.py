"""Fixtures of the model tests: a TimescaleDB database of the test's own."""
from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest

TIMESCALE_START = Path("/work/shared/timescaledb/start")
# The server that script starts by default; used as it is when it already answers.
TIMESCALE_DSN = os.environ.get("SINKFRAME_TEST_TIMESCALE_DSN", "postgresql://postgres@127.0.0.1:5442/postgres")


@pytest.fixture(scope="session")
def timescale_server() -> str:
    """The shared TimescaleDB server's DSN (started if it is not running); skipped where there is none."""
    try:
        with psycopg.connect(TIMESCALE_DSN, connect_timeout=3):
            return TIMESCALE_DSN
    except psycopg.OperationalError:
        pass
    if not TIMESCALE_START.exists():
        pytest.skip("no TimescaleDB server on this machine (/work/shared/timescaledb/start)")
    out = subprocess.run([str(TIMESCALE_START)], capture_output=True, text=True, timeout=600, check=True).stdout
    dsn = next((line.strip() for line in reversed(out.splitlines()) if line.strip().startswith("postgres")), None)
    assert dsn, f"no DSN in the output of {TIMESCALE_START}: {out!r}"
    return dsn


@pytest.fixture
def timescale_dsn(timescale_server) -> str:
    """A database of this test's own on the TimescaleDB server, with the extension; dropped after."""
    name = f"models_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(timescale_server, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
    dsn = psycopg.conninfo.make_conninfo(timescale_server, dbname=name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    yield dsn
    with psycopg.connect(timescale_server, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psycopg.sql.Identifier(name)))
