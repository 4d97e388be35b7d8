"""Helpers for the operations tests: a sink running in a thread with its monitor, scraping, waiting."""
from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import psycopg
from prometheus_client.parser import text_string_to_metric_families

from sinkframe.ops.runtime import RunMonitor
from sinkframe.pipeline.runner import run_connectors
from sinkframe.settings import Settings

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"

# Tansu delays the first group assignment by about half the session timeout (SERVICES.md).
FAST_GROUP_JOIN = {"SINKFRAME_KAFKA_SESSION_TIMEOUT_MS": "6000"}
TOPIC_ENV = {"raw": "RAW_TOPIC", "enriched": "ENRICHED_TOPIC", "smart_breaker": "SMART_BREAKER_TOPIC"}

# Tansu 0.6 answers "latest offset" with the last record *batch*'s base offset + 1,
# not the last record's offset + 1, so watermarks (and lag) are only exact when
# every record is its own batch. Real Kafka and Redpanda do not need this.
ONE_RECORD_PER_BATCH = {"batch.num.messages": "1"}


def send(bootstrap: str, fleet, topics: dict, count: int):
    """Produce `count` simulator messages as fast as possible; all must be delivered."""
    from sinkframe.simulator import produce

    report = produce(bootstrap, fleet, rate=None, count=count, topics=topics, config=ONE_RECORD_PER_BATCH)
    assert report.delivered == count, report.first_error
    return report


def sink_settings(monkeypatch, bootstrap: str, dsn: str, topics: dict, **extra) -> Settings:
    """Environment as a deployment sets it (connector files read the topics from it), as Settings."""
    env = {"REDPANDA_BROKERS": bootstrap, "SINKFRAME_DATABASE_URL": dsn, "SINKFRAME_PLAIN_POSTGRES": "1",
           "SINKFRAME_SCHEMA_DIR": str(REPO / "schema"), "SINKFRAME_BATCH_MAX_WAIT_MS": "200",
           **FAST_GROUP_JOIN, **{TOPIC_ENV[k]: v for k, v in topics.items()}, **extra}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings.from_env()


class RunningSink:
    """`run_connectors` in a thread with a RunMonitor serving on a free port; stop() ends both."""

    def __init__(self, paths, settings: Settings, *, metrics_port: int, progress=False, stream=None):
        self.monitor = RunMonitor(metrics_port=metrics_port, progress=progress, metrics_host="127.0.0.1",
                                  stream=stream)
        self.pipeline = None
        self.error: BaseException | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(paths, settings), daemon=True)

    def _run(self, paths, settings):
        def started(pipeline):
            self.pipeline = pipeline
            self.monitor.started(pipeline)
            self._started.set()

        try:
            run_connectors([Path(p) for p in paths], settings, on_started=started, on_tick=self.monitor.tick)
        except BaseException as err:  # noqa: BLE001 - reported by stop()
            self.error = err
        finally:
            self._started.set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.monitor.port}"

    def start(self, timeout: float = 30) -> "RunningSink":
        self._thread.start()
        assert self._started.wait(timeout), "the sink did not start"
        if self.error:
            raise self.error
        return self

    def stop(self, timeout: float = 30) -> None:
        if self.pipeline is not None:
            self.pipeline.stop()
        self._thread.join(timeout)
        self.monitor.close()
        assert not self._thread.is_alive(), "the sink did not stop"

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def http_get(url: str, timeout: float = 10) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def scrape(url: str) -> dict:
    """/metrics as {(sample name, frozenset(labels)): value}."""
    status, text = http_get(url + "/metrics")
    assert status == 200, text
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def metric_sum(samples: dict, name: str, **labels) -> float:
    wanted = set(labels.items())
    return sum(v for (n, lbls), v in samples.items() if n == name and wanted <= lbls)


def ready(url: str) -> tuple[int, dict]:
    status, body = http_get(url + "/readyz")
    return status, json.loads(body)


def wait_for(predicate, *, timeout: float, interval: float = 0.2, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def count_rows(dsn: str, table: str) -> int:
    from psycopg import sql

    with psycopg.connect(dsn) as conn:
        return conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()[0]
