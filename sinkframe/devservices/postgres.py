"""The machine's own PostgreSQL server, when one answers on the default port."""
from __future__ import annotations

import os

import psycopg


def local_postgres_dsn(dbname: str = "postgres") -> str | None:
    """A DSN for a PostgreSQL that accepts us on 127.0.0.1:5432 (or $PGHOST/$PGPORT), else None."""
    host = os.environ.get("PGHOST", "127.0.0.1")
    port = os.environ.get("PGPORT", "5432")
    user = os.environ.get("PGUSER", "postgres")
    dsn = f"host={host} port={port} user={user} dbname={dbname} connect_timeout=3"
    try:
        with psycopg.connect(dsn):
            return dsn
    except psycopg.Error:
        return None
