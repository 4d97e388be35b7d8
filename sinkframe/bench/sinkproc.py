"""`sinkframe run` (and the Quix app) as child processes, watched from outside as a user would run them.

The benchmark never times the sink from inside: it starts the real command, reads
its log lines (to see when partitions were assigned), samples its memory and CPU
from /proc, and watches the database for committed rows.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Mapping

from prometheus_client.parser import text_string_to_metric_families

from sinkframe.bench import procstats

# Only a safety net: the idle clock of `sinkframe run` starts before Tansu's first
# assignment (about 3 s), so a short one can end the run before any message.
# The benchmark stops the sink itself (SIGTERM: finish in-flight batches, exit).
IDLE_EXIT = 20.0


def sink_command() -> list[str]:
    script = Path(sys.executable).with_name("sinkframe")
    if script.exists():
        return [str(script)]
    found = shutil.which("sinkframe")
    return [found] if found else [sys.executable, "-c", "from sinkframe.cli import main; main()"]


def cli_supports_workers() -> bool:
    """Whether `sinkframe run` has `--workers N` in this build."""
    from sinkframe.cli.main import run

    return any(param.name == "workers" for param in run.params)


class ChildProcess:
    """A child process watched from outside: its stderr lines are stamped with the time they were
    read (perf_counter) and kept in a log file, its memory and CPU are read from /proc."""

    def __init__(self, args: list[str], *, env: Mapping[str, str], log_path: Path):
        self.args = args
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.started_at: float | None = None
        self.peak_rss_kib: dict[int, int] = {}
        self._reader: threading.Thread | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def start(self):
        self.started_at = time.perf_counter()
        self.proc = subprocess.Popen(self.args, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, bufsize=1)
        self._reader = threading.Thread(target=self._read_log, name="bench-child-log", daemon=True)
        self._reader.start()
        return self

    def on_line(self, now: float, line: str) -> None:
        """Called for every stderr line, in the reader thread."""

    def _read_log(self) -> None:
        with open(self.log_path, "a", encoding="utf-8") as log:
            for line in self.proc.stderr:
                now = time.perf_counter()
                log.write(f"[+{now - self.started_at:8.3f}s] {line}")
                self.on_line(now, line)

    def processes(self) -> list[int]:
        if self.proc is None or self.proc.poll() is not None:
            return []
        return [self.proc.pid, *procstats.descendants(self.proc.pid)]

    def sample_memory(self) -> None:
        """Remember each process's VmHWM (peak RSS); call it until just before the process ends."""
        for pid in self.processes():
            peak = procstats.peak_rss_kib(pid)
            if peak is not None:
                self.peak_rss_kib[pid] = max(peak, self.peak_rss_kib.get(pid, 0))

    def thread_cpu(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for pid in self.processes():
            for name, seconds in procstats.thread_cpu(pid).items():
                totals[name] = round(totals.get(name, 0.0) + seconds, 2)
        return totals

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM (finish the work in flight and exit), then SIGKILL after `timeout`."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        if self._reader is not None:
            self._reader.join(5)
        return code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class SinkProcess(ChildProcess):
    """One `sinkframe run` process (which may have worker children)."""

    def __init__(self, config: Path, *, env: Mapping[str, str], log_path: Path, idle_exit: float = IDLE_EXIT,
                 workers: int | None = None, profile_path: Path | None = None, metrics_port: int | None = None):
        args = [*sink_command(), "run", str(config), "--exit-when-idle", str(idle_exit)]
        if workers is not None:
            args += ["--workers", str(workers)]
        if metrics_port is not None:
            args += ["--metrics-port", str(metrics_port)]
        super().__init__(args, env=env, log_path=log_path)
        self.profile_path = profile_path
        self.metrics_port = metrics_port
        self.assigned_at: list[float] = []  # perf_counter time of each "assigned <partitions>" log line
        self._profiler: subprocess.Popen | None = None

    def on_line(self, now: float, line: str) -> None:
        if ": assigned " in line and ": assigned nothing" not in line:
            self.assigned_at.append(now)
            if self.profile_path is not None and self._profiler is None:
                # Attach once the interpreter is up and consuming: the profile is of the work.
                self._profiler = start_profiler(self.proc.pid, self.profile_path)

    def fast_path_fallbacks(self) -> dict[str, int] | None:
        """reason -> records its mappers left to the per-record path (/metrics); None without a metrics port."""
        if self.metrics_port is None:
            return None
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            page = response.read().decode()
        counts: dict[str, int] = {}
        for family in text_string_to_metric_families(page):
            for sample in family.samples:
                if sample.name == "sinkframe_fast_path_fallbacks_total":
                    reason = sample.labels["reason"]
                    counts[reason] = counts.get(reason, 0) + int(sample.value)
        return counts

    def stop(self, timeout: float = 30) -> int:
        code = super().stop(timeout)
        if self._profiler is not None:
            try:
                self._profiler.wait(30)
            except subprocess.TimeoutExpired:
                self._profiler.terminate()
        return code

    def kill(self) -> None:
        super().kill()
        if self._profiler is not None and self._profiler.poll() is None:
            self._profiler.terminate()


def start_profiler(pid: int, output: Path) -> subprocess.Popen | None:
    """py-spy sampling the sink (100 Hz, waiting threads too) until it exits; None if py-spy is missing."""
    py_spy = Path(sys.executable).with_name("py-spy")
    binary = str(py_spy) if py_spy.exists() else shutil.which("py-spy")
    if binary is None:
        return None
    return subprocess.Popen([binary, "record", "--pid", str(pid), "--rate", "100", "--format", "raw", "--idle",
                             "--output", str(output)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
