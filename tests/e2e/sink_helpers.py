"""Helpers for end-to-end tests: run the sink in-process or as a process, wait, query."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg

from sinkframe.pipeline.runner import run_connectors
from sinkframe.settings import Settings

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"

# Tansu delays the first group assignment by about half the session timeout.
FAST_GROUP_JOIN = {"SINKFRAME_KAFKA_SESSION_TIMEOUT_MS": "2000", "SINKFRAME_KAFKA_HEARTBEAT_INTERVAL_MS": "500"}


def run_sink(paths, env: dict, *, idle_exit: float = 2.0, timeout: float = 90, plugins_dirs=()):
    """Run connectors in-process until no message arrived for `idle_exit` seconds."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # connector files interpolate ${RAW_TOPIC} etc. from the environment
    result: dict = {}

    def target():
        try:
            result["pipeline"] = run_connectors([Path(p) for p in paths], Settings.from_env(), idle_exit=idle_exit,
                                                plugins_dirs=plugins_dirs)
        except BaseException as err:  # re-raised in the test thread
            result["error"] = err

    try:
        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        thread.join(timeout)
        assert not thread.is_alive(), f"sink did not stop within {timeout}s"
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    if "error" in result:
        raise result["error"]
    return result["pipeline"]


def start_sink_process(paths, env: dict, log_path: Path, *extra_args: str) -> subprocess.Popen:
    """`sinkframe run` as a child process (for kill -9 and SIGTERM tests)."""
    cmd = [sys.executable, "-m", "sinkframe.cli", "run", *map(str, paths), *extra_args]
    with open(log_path, "ab") as log:
        return subprocess.Popen(cmd, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)


def wait_for(predicate, *, timeout: float, interval: float = 0.2, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def query(dsn: str, statement, params=None):
    with psycopg.connect(dsn) as conn:
        return conn.execute(statement, params).fetchall()
