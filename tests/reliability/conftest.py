"""Fixtures of the reliability tests (real broker, real PostgreSQL; see SERVICES.md)."""
from __future__ import annotations

import uuid

import pytest

from sinkframe.devservices import create_topics

from sinktest.pgserver import PrivatePostgres, skip_without_server_binaries


@pytest.fixture
def new_topic(kafka_bootstrap):
    """Create a uniquely named topic: new_topic(partitions=1) -> name."""

    def create(partitions: int = 1, prefix: str = "rel") -> str:
        name = f"{prefix}.{uuid.uuid4().hex[:10]}"
        create_topics(kafka_bootstrap, [name], partitions=partitions)
        return name

    return create


@pytest.fixture
def private_pg():
    """A PostgreSQL server of this test's own (trust auth), free to be stopped and restarted."""
    skip_without_server_binaries()
    with PrivatePostgres() as server:
        yield server
