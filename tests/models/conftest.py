"""Helpers of the model tests: simulated breaker rows as the detector reads them, and a TimescaleDB database."""
from __future__ import annotations

import os
import subprocess
import uuid
from datetime import datetime
from pathlib import Path

import numpy as np
import orjson
import psycopg
import pytest

from sinkframe.models.detector import Rows
from sinkframe.simulator import Fleet

FEATURES = ("temperature", "current_phase_a", "current_phase_b", "current_phase_c")
TIMESCALE_START = Path("/work/shared/timescaledb/start")
# The server that script starts by default; used as it is when it already answers.
TIMESCALE_DSN = os.environ.get("SINKFRAME_TEST_TIMESCALE_DSN", "postgresql://postgres@127.0.0.1:5442/postgres")


def fleet_rows(fleet: Fleet, start: float, end: float, interval: float) -> Rows:
    """The smart_breaker readings of `fleet` in stream order, as the detector's Rows."""
    keys, times, response, loads = [], [], [], []
    for message in fleet.history(start, end, interval):
        if message.kind != "smart_breaker":
            continue
        body = orjson.loads(message.value)
        values = body["measurements"]
        keys.append(body["device_id"])
        times.append(datetime.fromisoformat(body["timestamp"].replace("Z", "+00:00")).timestamp())
        response.append(values["temperature"])
        loads.append([values[name] for name in FEATURES[1:]])
    return Rows(keys, np.array(times), np.array(response, dtype=float), np.array(loads, dtype=float))


def take(rows: Rows, mask: np.ndarray) -> Rows:
    picked = np.flatnonzero(mask)
    return Rows([rows.keys[i] for i in picked], rows.times[picked], rows.response[picked], rows.loads[picked])


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
