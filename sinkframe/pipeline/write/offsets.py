"""Kafka offsets kept in the database, in the same transaction as the rows.

This is what makes delivery exactly once: a batch's rows and the position after
its last record commit together or not at all, and on assignment the consumer
seeks to the stored position. Kafka's own committed offsets are only updated
afterwards, for lag tools.

Every update is a compare-and-set against the position this consumer loaded: if
another consumer (after a rebalance) advanced a partition meanwhile, the update
matches no row and the whole batch rolls back (`PartitionFenced`).
"""
from __future__ import annotations

from typing import Mapping

from psycopg import sql

from sinkframe.errors import PartitionFenced

OFFSETS_TABLE = "sinkframe_offsets"

CREATE_OFFSETS_TABLE = sql.SQL("""
CREATE TABLE IF NOT EXISTS {table} (
    consumer_group text NOT NULL,
    topic text NOT NULL,
    partition integer NOT NULL,
    next_offset bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, partition)
)""").format(table=sql.Identifier(OFFSETS_TABLE))

_LOAD = sql.SQL(
    "SELECT partition, next_offset FROM {table} WHERE consumer_group = %s AND topic = %s"
).format(table=sql.Identifier(OFFSETS_TABLE))

_INSERT_FIRST = sql.SQL(
    "INSERT INTO {table} (consumer_group, topic, partition, next_offset) VALUES (%s, %s, %s, %s) "
    "ON CONFLICT DO NOTHING"
).format(table=sql.Identifier(OFFSETS_TABLE))

_ADVANCE = sql.SQL(
    "UPDATE {table} SET next_offset = %s, updated_at = now() "
    "WHERE consumer_group = %s AND topic = %s AND partition = %s AND next_offset = %s"
).format(table=sql.Identifier(OFFSETS_TABLE))


def load_offsets(conn, group: str, topic: str) -> dict[int, int]:
    """The stored next offset of every partition of `topic` for `group`."""
    with conn.cursor() as cur:
        cur.execute(_LOAD, (group, topic))
        return dict(cur.fetchall())


def advance_offsets(cur, group: str, topic: str, believed: Mapping[int, int | None],
                    next_offsets: Mapping[int, int]) -> None:
    """Move each partition from `believed` to `next_offsets` or raise PartitionFenced."""
    for partition, next_offset in sorted(next_offsets.items()):
        expected = believed.get(partition)
        if expected is None:
            cur.execute(_INSERT_FIRST, (group, topic, partition, next_offset))
        else:
            cur.execute(_ADVANCE, (next_offset, group, topic, partition, expected))
        if cur.rowcount != 1:
            raise PartitionFenced(topic, partition)
