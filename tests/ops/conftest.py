"""Fixtures of the operations tests (real broker, real PostgreSQL; see ../conftest.py)."""
from __future__ import annotations

import shutil
import uuid

import pytest
from ops_helpers import sink_settings
from ops_pgserver import DedicatedPostgres

from sinkframe.simulator import DEFAULT_TOPICS, ensure_topics


@pytest.fixture
def topics(kafka_bootstrap):
    """Topic per message kind, unique to the test, created with 3 partitions."""
    suffix = uuid.uuid4().hex[:8]
    names = {kind: f"{name}.{suffix}" for kind, name in DEFAULT_TOPICS.items()}
    ensure_topics(kafka_bootstrap, list(names.values()), partitions=3)
    return names


@pytest.fixture
def settings(monkeypatch, kafka_bootstrap, pg_dsn, topics):
    return sink_settings(monkeypatch, kafka_bootstrap, pg_dsn, topics)


@pytest.fixture(scope="module")
def dedicated_postgres():
    """A PostgreSQL server of this module's own, which tests may stop and start."""
    server = DedicatedPostgres().init()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture(scope="session")
def promtool():
    path = shutil.which("promtool")
    if not path:
        pytest.fail("promtool not found: install the Debian package `prometheus` "
                    "(apt-get update && apt-get install -y prometheus)")
    return path
