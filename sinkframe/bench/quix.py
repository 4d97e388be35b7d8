"""Quix Streams' PostgreSQLSink on the same backlog: the library a Python user would pick instead.

The same N smart-breaker messages as the end-to-end run, on a fresh topic of a
fresh broker with the same partitions, drained by quix_app.py (a Quix
Application, a StreamingDataFrame mapping the JSON to the columns, the sink;
Quix's defaults) as a child process, into smart_breaker_data emptied first: the
table, columns and indexes sinkframe writes.

Clock: from the app's first message (its log line; sinkframe's is timed from its
partition assignment, which comes a few ms before its first message) to the
moment the benchmark reads the app's log line for the write that brings the
rows to N. Quix logs that line right after the write's transaction commits; the
row count (and the count of distinct Kafka coordinates) is checked afterwards in
the database. Reported beside it: the rate from the process start and from the
first to the last commit, like sinkframe's.

Quix needs `quixstreams[postgresql]` (psycopg2). It pins confluent-kafka below
the version sinkframe may run with, so it can live in its own virtualenv:
SINKFRAME_BENCH_QUIX_PYTHON names that interpreter. Without either the section
is skipped, with the reason.
"""
from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg

from sinkframe.bench import database, procstats, services
from sinkframe.bench.endtoend import unique_topic
from sinkframe.bench.quix_app import FIRST_MESSAGE
from sinkframe.bench.services import BenchContext
from sinkframe.bench.sinkproc import ChildProcess
from sinkframe.bench.workload import create_topic, produce_all
from sinkframe.errors import SinkframeError
from sinkframe_plugins.smart_breaker import FLOAT_MEASUREMENTS

QUIX_PYTHON_ENV = "SINKFRAME_BENCH_QUIX_PYTHON"
APP = Path(__file__).with_name("quix_app.py")
WROTE = re.compile(r"Successfully wrote records.*table row counts: (\{.*\})")
POLL_SECONDS = 0.02
VERSIONS = ("import json, sys; from importlib.metadata import version as v; import confluent_kafka as ck; "
            "print(json.dumps({'python': sys.version.split()[0], 'quixstreams': v('quixstreams'), "
            "'confluent_kafka': v('confluent-kafka'), 'librdkafka': ck.libversion()[0], "
            "'psycopg2': v('psycopg2-binary')}))")


def quix_python() -> tuple[str | None, str]:
    """(the interpreter that runs the Quix app, how it was found), or (None, why there is none)."""
    given = os.environ.get(QUIX_PYTHON_ENV)
    if given:
        return given, f"${QUIX_PYTHON_ENV}"
    missing = [m for m in ("quixstreams", "psycopg2") if importlib.util.find_spec(m) is None]
    if not missing:
        return sys.executable, "this interpreter"
    return None, (f"{' and '.join(missing)} not installed here: `make bench` makes a virtualenv with "
                  f"quixstreams[postgresql], or set {QUIX_PYTHON_ENV} to a Python that has it (quixstreams pins "
                  "confluent-kafka<2.13, so a separate virtualenv keeps the sink's own version)")


class QuixProcess(ChildProcess):
    """The Quix app; counts the rows its sink reports written, with the time each report was read."""

    def __init__(self, python: str, args: list[str], *, log_path: Path, env: dict[str, str] | None = None):
        super().__init__([python, str(APP), *args], env={"PYTHONUNBUFFERED": "1", **(env or {})},
                         log_path=log_path)
        self.first_message_at: float | None = None
        self.writes: list[tuple[float, int]] = []  # (time read, rows written so far)
        self.errors: list[str] = []
        self._lock = threading.Lock()

    def on_line(self, now: float, line: str) -> None:
        match = WROTE.search(line)
        if match:
            rows = sum(ast.literal_eval(match[1]).values())
            with self._lock:
                self.writes.append((now, (self.writes[-1][1] if self.writes else 0) + rows))
        elif FIRST_MESSAGE in line and self.first_message_at is None:
            self.first_message_at = now
        elif "[ERROR]" in line or "Traceback" in line:
            self.errors.append(line.strip())

    def written(self) -> tuple[float, int] | None:
        with self._lock:
            return self.writes[-1] if self.writes else None


def start_app(ctx: BenchContext, python: str, bootstrap: str, topic: str) -> QuixProcess:
    with psycopg.connect(ctx.dsn) as conn:
        info = conn.info
        host, port, dbname, user, password = info.host, info.port, info.dbname, info.user, info.password
    args = ["--broker", bootstrap, "--topic", topic, "--session-timeout-ms", services.session_timeout_ms(),
            "--state-dir", str(ctx.workdir / "quix-state"), "--host", host, "--port", str(port),
            "--dbname", dbname, "--user", user, "--table", ctx.tables.data,
            "--float-columns", ",".join(FLOAT_MEASUREMENTS)]
    env = {"PGPASSWORD": password} if password else {}
    return QuixProcess(python, args, log_path=ctx.log_path("quix"), env=env).start()


def interpreter_versions(python: str) -> dict:
    try:
        return json.loads(subprocess.run([python, "-c", VERSIONS], capture_output=True, text=True, check=True,
                                         timeout=60).stdout)
    except (OSError, subprocess.SubprocessError, ValueError) as err:
        raise SinkframeError(f"Quix Streams: cannot run {python}: {err}") from err


def watch(app: QuixProcess, messages: int, *, timeout: float) -> float:
    """Sample the app until its writes reach `messages`; return that moment (perf_counter)."""
    while True:
        app.sample_memory()
        written = app.written()
        if written and written[1] >= messages:
            return written[0]
        if app.proc.poll() is not None:
            raise SinkframeError(f"the Quix app exited ({app.proc.returncode}) with {written[1] if written else 0} "
                                 f"of {messages} rows written: {(app.errors or ['no error logged'])[-1]}; "
                                 f"see {app.log_path}")
        if time.perf_counter() - app.started_at > timeout:
            raise SinkframeError(f"the Quix app timed out after {timeout:.0f}s with "
                                 f"{written[1] if written else 0} of {messages} rows written; see {app.log_path}")
        time.sleep(POLL_SECONDS)


def run_quix(ctx: BenchContext, messages: int) -> dict:
    python, found = quix_python()
    if python is None:
        return {"skipped": found}
    versions = interpreter_versions(python)
    topic = unique_topic("quix")
    with services.broker(ctx, "quix") as bootstrap:
        create_topic(bootstrap, topic, ctx.partitions)
        produced = produce_all(bootstrap, topic, messages)
        database.reset_tables(ctx.dsn, ctx.tables)
        postgres_cpu = procstats.CpuMeter(lambda: services.postgres_pids(ctx.dsn)).start()
        app = start_app(ctx, python, bootstrap, topic)
        try:
            done_at = watch(app, messages, timeout=max(300.0, messages / 500))
            cpu = {"quix": round(sum(app.thread_cpu().values()), 2), "postgres": postgres_cpu.stop()}
            exit_code = app.stop()
        finally:
            app.kill()
    return summarize(ctx, app, messages, produced.seconds, done_at, cpu, exit_code, versions, found)


def summarize(ctx: BenchContext, app: QuixProcess, messages: int, produce_seconds: float, done_at: float,
              cpu: dict, exit_code: int, versions: dict, found: str) -> dict:
    first_commit_at, first_rows = app.writes[0]
    working = done_at - app.first_message_at
    first_to_last = done_at - first_commit_at
    return {
        "messages": messages,
        "partitions": ctx.partitions,
        "interpreter": f"{found}: {app.args[0]}",
        "versions": versions,
        "settings": "Quix defaults (at-least-once, commit_interval 5 s) + auto_offset_reset=earliest, "
                    "session.timeout.ms as the sink's, include_metadata=False",
        "produce_seconds_not_timed": round(produce_seconds, 3),
        "seconds_total": round(done_at - app.started_at, 3),
        "startup_seconds": round(app.first_message_at - app.started_at, 3),
        "seconds_from_first_message": round(working, 3),
        "seconds_first_to_last_commit": round(first_to_last, 3),
        "msgs_per_second": round(messages / working),
        "msgs_per_second_from_start": round(messages / (done_at - app.started_at)),
        "msgs_per_second_first_to_last_commit":
            round((messages - first_rows) / first_to_last) if first_to_last > 0 else None,
        "writes": len(app.writes),
        "rows_counted": database.count_rows(ctx.dsn, ctx.tables.data),
        "rows_with_distinct_source": database.count_distinct_sources(ctx.dsn, ctx.tables.data),
        "peak_rss_mb": round(max(app.peak_rss_kib.values(), default=0) / 1024, 1) or None,
        "cpu_seconds": cpu,
        "exit_code": exit_code,
        "log": str(app.log_path),
    }
