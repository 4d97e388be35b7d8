"""The sink under test: in-process on a thread (with its Pipeline at hand), or as a child process."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from sinkframe.ops.runtime import RunMonitor
from sinkframe.pipeline.runner import Pipeline, run_connectors
from sinkframe.config.settings import Settings

from .config import exported
from .paths import REPO
from .waiting import wait_for


class InProcessSink:
    """`run_connectors` on a thread, with the Pipeline at hand for its tasks' state.

    `settings` is a Settings, or an environment read with Settings.from_env. With a
    `metrics_port` (or `progress`), a RunMonitor serves /metrics, /healthz and /readyz
    at `url` and draws the progress line, as `sinkframe run --metrics-port` does.

    start() returns once the connectors run (a failure to start is raised there);
    stop() asks the pipeline to stop, join() waits for the thread and re-raises its
    error. As a context manager: start, then stop and join on exit.
    """

    def __init__(self, paths, settings: Settings | Mapping[str, str], *, idle_exit: float | None = None,
                 plugins_dirs=(), metrics_port: int | None = None, progress: bool = False, stream=None):
        self.settings = settings if isinstance(settings, Settings) else Settings.from_env(settings)
        self.paths = [Path(p) for p in paths]
        self.idle_exit = idle_exit
        self.plugins_dirs = plugins_dirs
        self.monitor: RunMonitor | None = None
        if metrics_port is not None or progress:
            self.monitor = RunMonitor(metrics_port=metrics_port, progress=progress, metrics_host="127.0.0.1",
                                      stream=stream)
        self.pipeline: Pipeline | None = None
        self.error: BaseException | None = None
        self._started = threading.Event()
        self._monitor_closed = False
        self.thread = threading.Thread(target=self._run, daemon=True, name="test-sink")

    def _run(self) -> None:
        def started(pipeline):
            self.pipeline = pipeline
            if self.monitor is not None:
                self.monitor.started(pipeline)
            self._started.set()

        try:
            run_connectors(self.paths, self.settings, plugins_dirs=self.plugins_dirs, idle_exit=self.idle_exit,
                           on_started=started, on_tick=self.monitor.tick if self.monitor is not None else None)
        except BaseException as err:  # re-raised by start() or join()
            self.error = err
        finally:
            self._started.set()

    @property
    def tasks(self):
        return self.pipeline.tasks if self.pipeline else []

    @property
    def url(self) -> str:
        """The monitor's base URL (needs `metrics_port`)."""
        return f"http://127.0.0.1:{self.monitor.port}"

    def start(self, timeout: float = 30) -> "InProcessSink":
        self.thread.start()
        assert self._started.wait(timeout), f"the sink did not start within {timeout}s"
        if self.error is not None:
            self.join(timeout)  # raises the error
        return self

    def stop(self) -> None:
        if self.pipeline is not None:
            self.pipeline.stop()

    def join(self, timeout: float = 30, *, reraise: bool = True) -> None:
        self.thread.join(timeout)
        if self.monitor is not None and not self._monitor_closed:
            self._monitor_closed = True
            self.monitor.close()
        assert not self.thread.is_alive(), f"the sink did not stop within {timeout}s"
        if reraise and self.error is not None:
            raise self.error

    def __enter__(self) -> "InProcessSink":
        return self.start()

    def __exit__(self, exc_type, *exc) -> None:
        self.stop()
        self.join(30, reraise=exc_type is None)  # an error of the test's own is not masked


def run_until_idle(paths, env: Mapping[str, str], *, idle_exit: float = 2.0, timeout: float = 90,
                   plugins_dirs=()) -> Pipeline:
    """Run connectors in-process until no message arrived for `idle_exit` seconds.

    `env` is exported for the run: connector files interpolate ${RAW_TOPIC} etc. from the environment."""
    with exported(env):
        sink = InProcessSink(paths, Settings.from_env(), idle_exit=idle_exit, plugins_dirs=plugins_dirs)
        sink.thread.start()
        sink.join(timeout)
    return sink.pipeline


def run_until_written(paths, env: Mapping[str, str], *, messages: int, timeout: float = 60) -> Pipeline:
    """Run until `messages` messages are written (rows or dead letters) or the sink stops by itself."""
    sink = InProcessSink(paths, env).start()
    try:
        wait_for(lambda: not sink.thread.is_alive() or sum(t.stats.messages for t in sink.tasks) >= messages,
                 timeout=timeout, message=f"{messages} messages to be written")
    finally:
        sink.stop()
        sink.join(timeout)
    return sink.pipeline


def start_sink_process(paths, env: Mapping[str, str], log_path: Path, *args: str,
                       log_level: str = "INFO") -> subprocess.Popen:
    """`python -m sinkframe.cli run FILES ARGS` as a child process (for kill -9 and SIGTERM tests),
    its output appended to `log_path`."""
    cmd = [sys.executable, "-m", "sinkframe.cli", "--log-level", log_level, "run", *map(str, paths), *args]
    with open(log_path, "ab") as log:
        return subprocess.Popen(cmd, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)


# What `sinkframe run` logs once its signal handlers are installed.
RUNNING = re.compile(r"running \d+ connector\(s\)")


def run_process_until(paths, env: Mapping[str, str], log_path: Path, done, *, timeout: float,
                      message: str) -> None:
    """A fresh `sinkframe run` child until `done()` holds, a batch interval more (a duplicate
    would land within it), then SIGTERM: it must write what is in flight and exit 0."""
    started = len(RUNNING.findall(log_path.read_text())) if log_path.exists() else 0
    sink = start_sink_process(paths, env, log_path)
    try:
        wait_for(done, timeout=timeout, message=message)
        # A SIGTERM before the sink installed its handler would kill it (exit -15), not stop it.
        wait_for(lambda: len(RUNNING.findall(log_path.read_text())) > started, timeout=timeout,
                 message="the sink to be running")
        time.sleep(1.0)
    finally:
        sink.send_signal(signal.SIGTERM)
        assert sink.wait(30) == 0
