"""The fault proxy itself, in front of the machine's PostgreSQL: it forwards, swallows, heals."""
from __future__ import annotations

import threading

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from sinktest.faultproxy import FaultProxy


def _through(proxy: FaultProxy, dsn: str) -> str:
    params = conninfo_to_dict(dsn)
    params.update(host=proxy.host, port=str(proxy.port))
    return make_conninfo("", **params)


def test_blackhole_swallows_and_heal_leaves_old_connections_dead(pg_dsn):
    params = conninfo_to_dict(pg_dsn)
    with FaultProxy(params.get("host") or "127.0.0.1", int(params.get("port") or 5432)) as proxy:
        dsn = _through(proxy, pg_dsn)
        old = psycopg.connect(dsn, autocommit=True)
        assert old.execute("SELECT 1").fetchone() == (1,)

        proxy.blackhole()
        # No reset reaches the client: a query on the old connection just waits.
        answers = []
        waiting = threading.Thread(target=lambda: answers.append(_query_or_error(old)), daemon=True)
        waiting.start()
        waiting.join(1.5)
        assert waiting.is_alive() and not answers
        # A new connection is accepted but never answered: only the client's timeout ends it.
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(dsn, connect_timeout=2)

        proxy.heal()
        with psycopg.connect(dsn, connect_timeout=5, autocommit=True) as fresh:
            assert fresh.execute("SELECT 2").fetchone() == (2,)
        # Healing does not revive the old connection.
        waiting.join(1.0)
        assert waiting.is_alive() and not answers
    waiting.join(5)  # closing the proxy closes the sockets: the waiting query ends with an error
    assert answers and isinstance(answers[0], psycopg.OperationalError)
    old.close()


def _query_or_error(conn):
    try:
        return conn.execute("SELECT 1").fetchone()
    except psycopg.Error as err:
        return err


def test_drop_resets_open_connections(pg_dsn):
    params = conninfo_to_dict(pg_dsn)
    with FaultProxy(params.get("host") or "127.0.0.1", int(params.get("port") or 5432)) as proxy:
        conn = psycopg.connect(_through(proxy, pg_dsn), autocommit=True)
        assert conn.execute("SELECT 1").fetchone() == (1,)
        proxy.drop()
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
        conn.close()
