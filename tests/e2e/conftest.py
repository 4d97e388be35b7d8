"""Fixtures for end-to-end runs of the sink against the real broker and database."""
from __future__ import annotations

import uuid

import pytest
from sink_helpers import FAST_GROUP_JOIN, REPO

@pytest.fixture
def topics():
    """Unique topic names for the three connectors, so tests never see each other's data."""
    suffix = uuid.uuid4().hex[:8]
    return {"RAW_TOPIC": f"iot.raw.{suffix}", "ENRICHED_TOPIC": f"iot.enriched.{suffix}",
            "SMART_BREAKER_TOPIC": f"iot.smart_breaker.enriched.{suffix}"}


@pytest.fixture
def sink_env(kafka_bootstrap, pg_dsn, topics):
    """The environment a deployment would set, pointing at the test's broker, database and topics."""
    return {
        "REDPANDA_BROKERS": kafka_bootstrap,
        "SINKFRAME_DATABASE_URL": pg_dsn,
        "SINKFRAME_PLAIN_POSTGRES": "1",
        "SINKFRAME_SCHEMA_DIR": str(REPO / "schema"),
        **FAST_GROUP_JOIN,
        **topics,
    }

