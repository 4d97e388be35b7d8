"""Helpers for the reliability tests: tables, connector files, running the sink, counting."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
from psycopg import sql

from sinkframe.pipeline.runner import Pipeline, run_connectors
from sinkframe.settings import Settings

REPO = Path(__file__).resolve().parents[2]

# Tansu delays the first group assignment by about half the session timeout.
GROUP_JOIN_ENV = {"SINKFRAME_KAFKA_SESSION_TIMEOUT_MS": "6000", "SINKFRAME_KAFKA_HEARTBEAT_INTERVAL_MS": "1000"}

# The four tables of docs/tables.md, as plain tables (no TimescaleDB needed).
TABLES = {
    "iot_raw_data": """
        time timestamptz NOT NULL, device_id text NOT NULL, mqtt_topic text, payload jsonb,
        source_topic text NOT NULL, source_partition integer NOT NULL, source_offset bigint NOT NULL,
        ingested_at timestamptz NOT NULL DEFAULT now()""",
    "iot_enriched_data": """
        time timestamptz NOT NULL, device_id text NOT NULL, device_type text, payload jsonb, metadata jsonb,
        fdi_package jsonb, source_topic text NOT NULL, source_partition integer NOT NULL,
        source_offset bigint NOT NULL, ingested_at timestamptz NOT NULL DEFAULT now()""",
    "smart_breaker_data": """
        time timestamptz NOT NULL, device_id text NOT NULL,
        voltage_phase_a double precision, voltage_phase_b double precision, voltage_phase_c double precision,
        current_phase_a double precision, current_phase_b double precision, current_phase_c double precision,
        temperature double precision, power_factor double precision, frequency double precision,
        active_power double precision, reactive_power double precision, energy_kwh double precision,
        breaker_status text, trip_count integer, extra_measurements jsonb,
        source_topic text NOT NULL, source_partition integer NOT NULL, source_offset bigint NOT NULL,
        ingested_at timestamptz NOT NULL DEFAULT now()""",
    "device_metadata": """
        device_id text PRIMARY KEY, device_type text, manufacturer text, model text, firmware_version text,
        location text, capabilities jsonb, fdi_package_id text, fdi_package_version text,
        first_seen timestamptz NOT NULL, last_seen timestamptz NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now()""",
}


def create_tables(dsn: str, overrides: dict[str, str] | None = None) -> None:
    """Create the data tables; `overrides` replaces a table's column list (to add constraints)."""
    columns = {**TABLES, **(overrides or {})}
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table, body in columns.items():
            # The column lists are constants of this file, not input.
            conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (" + body + ")").format(sql.Identifier(table)))


def write_connector(folder: Path, *, name: str, topic: str, plugin: str = "raw", tolerance: str = "all",
                    max_rows: int = 20_000, max_wait_ms: int = 200, extra: str = "") -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(f"""\
name: {name}
topic: {topic}
mapper:
  plugin: {plugin}
batch:
  max_rows: {max_rows}
  max_wait_ms: {max_wait_ms}
errors:
  tolerance: {tolerance}
{extra}""")
    return path


def sink_env(bootstrap: str, dsn: str, **more: str) -> dict[str, str]:
    return {"REDPANDA_BROKERS": bootstrap, "SINKFRAME_DATABASE_URL": dsn, "SINKFRAME_APPLY_SCHEMA": "0",
            "SINKFRAME_PLAIN_POSTGRES": "1", **GROUP_JOIN_ENV, **more}


class InProcessSink:
    """`run_connectors` on a thread, with the Pipeline at hand for its tasks' state."""

    def __init__(self, paths, env: dict[str, str], *, idle_exit: float | None = None):
        self.settings = Settings.from_env(env)
        self.paths = [Path(p) for p in paths]
        self.idle_exit = idle_exit
        self.pipeline: Pipeline | None = None
        self.error: BaseException | None = None
        self._started = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="test-sink")

    def _run(self) -> None:
        def started(pipeline):
            self.pipeline = pipeline
            self._started.set()

        try:
            run_connectors(self.paths, self.settings, idle_exit=self.idle_exit, on_started=started)
        except BaseException as err:  # re-raised by join()
            self.error = err
        finally:
            self._started.set()

    def start(self) -> "InProcessSink":
        self.thread.start()
        assert self._started.wait(60), "the sink did not start"
        return self

    @property
    def tasks(self):
        return self.pipeline.tasks if self.pipeline else []

    def stop(self) -> None:
        if self.pipeline:
            self.pipeline.stop()

    def join(self, timeout: float = 90) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"the sink did not stop within {timeout}s"
        if self.error is not None:
            raise self.error


def run_sink(paths, env: dict[str, str], *, messages: int, timeout: float = 60) -> Pipeline:
    """Run until `messages` messages are written (rows or dead letters) or the sink stops by itself."""
    sink = InProcessSink(paths, env).start()
    try:
        wait_for(lambda: not sink.thread.is_alive() or sum(t.stats.messages for t in sink.tasks) >= messages,
                 timeout=timeout, message=f"{messages} messages to be written")
    finally:
        sink.stop()
        sink.join(timeout)
    return sink.pipeline


def start_sink_process(paths, env: dict[str, str], log_path: Path, *args: str,
                       python_prefix: tuple[str, ...] = ("-m", "sinkframe.cli"),
                       log_level: str = "INFO") -> subprocess.Popen:
    """`python -m sinkframe.cli run FILES` as a child process, output appended to `log_path`."""
    cmd = [sys.executable, *python_prefix, "--log-level", log_level, "run", *map(str, paths), *args]
    with open(log_path, "ab") as log:
        return subprocess.Popen(cmd, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)


def wait_for(predicate, *, timeout: float, interval: float = 0.1, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def query(dsn: str, statement, params=None) -> list[tuple]:
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        return conn.execute(statement, params).fetchall()


def row_counts(dsn: str, table: str = "iot_raw_data") -> tuple[int, int]:
    """(rows, distinct (source_topic, source_partition, source_offset)) of a data table."""
    statement = sql.SQL("SELECT count(*), count(DISTINCT (source_topic, source_partition, source_offset)) "
                        "FROM {}").format(sql.Identifier(table))
    return query(dsn, statement)[0]


def dead_letters(dsn: str) -> list[tuple]:
    return query(dsn, "SELECT topic, partition, kafka_offset, stage, error_class, error_message, sqlstate, "
                      "key, value FROM sinkframe_dead_letters ORDER BY partition, kafka_offset")
