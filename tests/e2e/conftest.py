"""Fixtures for end-to-end runs of the sink against the real broker and database."""
from __future__ import annotations

import uuid

import pytest

from sinktest import config
from sinktest.paths import REPO


@pytest.fixture
def topics():
    """Unique topic names for the three connectors, so tests never see each other's data."""
    suffix = uuid.uuid4().hex[:8]
    return {"RAW_TOPIC": f"iot.raw.{suffix}", "ENRICHED_TOPIC": f"iot.enriched.{suffix}",
            "SMART_BREAKER_TOPIC": f"iot.smart_breaker.enriched.{suffix}"}


@pytest.fixture
def sink_env(kafka_bootstrap, pg_dsn, topics):
    """The environment a deployment would set, pointing at the test's broker, database and topics."""
    return config.sink_env(kafka_bootstrap, pg_dsn, schema_dir=REPO / "schema", group_join=config.FAST_GROUP_JOIN,
                           **topics)
