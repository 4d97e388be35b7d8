"""A session's temporary table that keyed rows are COPYed into, for one statement that merges and empties it.

An upsert cannot be a COPY, and rows passed as one array parameter per column
are encoded by psycopg in Python, element by element: that measured several
times the cost of the C row encoder COPY uses (docs/benchmark.md). So the
writer's keyed targets (device_metadata) and the model scores go by binary
COPY into a stage, and the statement that merges them reads it through
`WITH staged AS (DELETE FROM stage RETURNING *)`, which leaves it empty for the
next merge in the same transaction; the commit truncates it.

A temporary table belongs to its session: the writer creates its stages once
per connection (BatchWriter._prepare_session, session.py), and `stage` creates
one the session is not known to hold (IF NOT EXISTS). What a transaction staged
goes with it if it rolls back. The table is named after its column types, so
rows of the same shape share one; each merge empties it in the statement that
reads it.
"""
from __future__ import annotations

import hashlib
from typing import Iterable, Sequence

from psycopg import sql

from sinkframe.pipeline.write.session import SESSIONS


class CopyStage:
    """Columns c0, c1, ... of the given PostgreSQL types."""

    def __init__(self, types: Sequence[str]):
        self.types = list(types)
        shape = hashlib.sha1("\0".join(self.types).encode()).hexdigest()[:16]
        self.name = f"sinkframe_stage_{shape}"
        self.identifier = sql.Identifier(self.name)
        # ON COMMIT DELETE ROWS: the merge's DELETE leaves dead rows, and nothing vacuums a temporary
        # table, so without the truncation at each commit the stage grew by every batch it staged
        # (and each merge scanned all of it) for as long as the connection lived.
        self.create = sql.SQL("CREATE TEMPORARY TABLE IF NOT EXISTS {} ({}) ON COMMIT DELETE ROWS").format(
            self.identifier, sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(f"c{i}"), sql.SQL(t))
                                                for i, t in enumerate(self.types)))
        self._copy = sql.SQL("COPY {} FROM STDIN (FORMAT BINARY)").format(self.identifier)

    def merge(self, statement: sql.Composable) -> sql.Composed:
        """`statement` (which reads the staged rows FROM `staged`) preceded by the CTE that drains the stage."""
        return sql.SQL("WITH staged AS (DELETE FROM {} RETURNING *) ").format(self.identifier) + statement

    def stage(self, cur, rows: Iterable[tuple]) -> None:
        """COPY `rows` into the (empty) stage; created first unless the session is known to hold it."""
        if not SESSIONS.knows(cur.connection, self.name):
            cur.execute(self.create)
        with cur.copy(self._copy) as copy:
            copy.set_types(self.types)
            write_row = copy.write_row
            for row in rows:
                write_row(row)
