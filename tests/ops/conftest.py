"""Fixtures of the operations tests (real broker, real PostgreSQL; see ../conftest.py)."""
from __future__ import annotations

import shutil
import uuid

import pytest

from sinkframe.simulator import DEFAULT_TOPICS, ensure_topics

from sinktest.config import sink_settings
from sinktest.pgserver import PrivatePostgres


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
    """A PostgreSQL server of this module's own, which tests may stop and start.

    Commits are synchronous: a crash (immediate stop) loses none that it acknowledged,
    so the metrics count every message exactly once."""
    with PrivatePostgres(synchronous_commit=True) as server:
        yield server


@pytest.fixture(scope="session")
def promtool():
    path = shutil.which("promtool")
    if not path:
        pytest.fail("promtool not found: install the Debian package `prometheus` "
                    "(apt-get update && apt-get install -y prometheus)")
    return path
