"""Embedded TimescaleDB: PGlite + TimescaleDB (WASM) served by Node.js on a TCP port.

Its npm packages are installed once into a cache folder (`SINKFRAME_CACHE_DIR`,
default `~/.cache/sinkframe`) from the package.json/package-lock.json shipped
beside this file.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import psycopg

from sinkframe.devservices.ports import free_port
from sinkframe.errors import SinkframeError

ENGINE_SOURCE = Path(__file__).parent / "engine"


def cache_dir() -> Path:
    return Path(os.environ.get("SINKFRAME_CACHE_DIR", Path.home() / ".cache" / "sinkframe"))


def install_engine() -> Path:
    """Install the engine's npm packages (once) and return the folder to run it from."""
    node = shutil.which("node")
    npm = shutil.which("npm")
    if not node or not npm:
        raise SinkframeError("the embedded TimescaleDB engine needs Node.js 20+ and npm on PATH")
    target = cache_dir() / "timescale-engine"
    target.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json", "server.mjs"):
        src, dst = ENGINE_SOURCE / name, target / name
        if not dst.exists() or dst.read_bytes() != src.read_bytes():
            shutil.copyfile(src, dst)
    marker = target / "node_modules" / "@unni-craftsman" / "pglite" / "package.json"
    if not marker.exists():
        result = subprocess.run(
            [npm, "ci", "--legacy-peer-deps", "--no-audit", "--no-fund"],
            cwd=target, capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise SinkframeError(f"installing the embedded TimescaleDB engine failed:\n{result.stderr[-2000:]}")
    return target


class TimescaleEngine:
    """One embedded TimescaleDB server. In memory unless `data_dir` is given."""

    user = "postgres"
    password = "postgres"
    dbname = "postgres"

    def __init__(self, port: int | None = None, *, data_dir: Path | None = None,
                 log_path: Path | None = None):
        self.port = port or free_port()
        self.data_dir = data_dir
        self.log_path = log_path
        self._proc: subprocess.Popen | None = None

    @property
    def dsn(self) -> str:
        return (f"host=127.0.0.1 port={self.port} user={self.user} password={self.password} "
                f"dbname={self.dbname} sslmode=disable")

    def start(self, *, timeout: float = 60) -> "TimescaleEngine":
        folder = install_engine()
        args = ["node", "server.mjs", str(self.port)]
        if self.data_dir:
            args.append(str(self.data_dir))
        log_path = self.log_path or (cache_dir() / f"timescale-engine-{self.port}.log")
        with open(log_path, "wb") as log:
            self._proc = subprocess.Popen(args, cwd=folder, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True)
        deadline = time.monotonic() + timeout
        while b"READY" not in log_path.read_bytes():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SinkframeError(f"the embedded TimescaleDB engine did not start; see {log_path}:\n"
                                     + log_path.read_text(errors="replace")[-2000:])
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def __enter__(self) -> "TimescaleEngine":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def connect_to_engine(dsn: str, *, attempts: int = 50, interval: float = 0.1) -> psycopg.Connection:
    """An autocommit connection to the embedded engine, retried while its one slot frees up.

    The engine serves one connection at a time and notices a closed one only a
    moment later, refusing a new one meanwhile. Its connections share one backend
    session, so server-side prepared statements are turned off: a statement
    prepared by an earlier connection would still exist under the same name.
    """
    for attempt in range(attempts):
        try:
            return psycopg.connect(dsn, autocommit=True, prepare_threshold=None)
        except psycopg.OperationalError:
            if attempt == attempts - 1:
                raise
            time.sleep(interval)
    raise AssertionError("unreachable")
