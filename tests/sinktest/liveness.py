"""Pieces of the liveness tests: the database behind a FaultProxy, writes slowed on demand, a steady stream."""
from __future__ import annotations

import threading
import time

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from sinkframe.devservices import produce

from .faultproxy import FaultProxy

# Every write into iot_raw_data waits while the table `slow_writes` holds a row for
# it (for every client, or only for one application_name), at most `seconds`: a test
# can hold a write in flight, and release it at once by deleting the row.
SLOW_WRITES = """
CREATE TABLE slow_writes (seconds double precision NOT NULL, application_name text);
CREATE FUNCTION slow_write() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  held_until timestamptz := clock_timestamp() + make_interval(secs => coalesce((
    SELECT max(seconds) FROM slow_writes
    WHERE application_name IS NULL OR application_name = current_setting('application_name')), 0));
BEGIN
  WHILE clock_timestamp() < held_until AND EXISTS (
      SELECT 1 FROM slow_writes
      WHERE application_name IS NULL OR application_name = current_setting('application_name')) LOOP
    PERFORM pg_sleep(0.05);
  END LOOP;
  RETURN NULL;
END $$;
CREATE TRIGGER slow_write BEFORE INSERT ON iot_raw_data FOR EACH STATEMENT EXECUTE FUNCTION slow_write();
"""
IN_FLIGHT = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state = 'active' "
             "AND query LIKE 'COPY%iot_raw_data%'")
IN_FLIGHT_OF = IN_FLIGHT.replace("%", "%%") + " AND application_name = %s"  # one client's, by application_name


def proxy_for(dsn: str) -> FaultProxy:
    params = conninfo_to_dict(dsn)
    return FaultProxy(params.get("host") or "127.0.0.1", int(params.get("port") or 5432))


def through(proxy: FaultProxy, dsn: str) -> str:
    """`dsn`, connecting through `proxy`."""
    params = conninfo_to_dict(dsn)
    params.update(host=proxy.host, port=str(proxy.port))
    return make_conninfo("", **params)


def slow_writes(dsn: str, seconds: float | None, *, application_name: str | None = None) -> None:
    """Hold every write into iot_raw_data (of that application_name only, if given) for `seconds` from
    now on (None: no more, and the writes held now go on at once)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM slow_writes")
        if seconds is not None:
            conn.execute("INSERT INTO slow_writes VALUES (%s, %s)", (seconds, application_name))


def messages(start: int, count: int):
    return ({"device_id": f"dev-{i % 53}", "timestamp": 1_700_000_000 + i, "payload": {"i": i}}
            for i in range(start, start + count))


def steady_producer(bootstrap: str, topic: str, start: int, count: int, per_second: int) -> threading.Thread:
    """Produce `count` messages from number `start` at about `per_second`, keyed by device, on a thread."""
    def run():
        step = max(per_second // 10, 1)
        for first in range(start, start + count, step):
            produce(bootstrap, topic, messages(first, min(step, start + count - first)),
                    key=lambda m: m["device_id"].encode())
            time.sleep(0.1)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread
