"""A row the database refuses costs neither the batch's good rows nor exactly-once.

The writer isolates refused records inside the batch's one transaction; these
tests check, against a real PostgreSQL, what lands, what is dead-lettered (with
its SQLSTATE) and which offsets are stored.
"""
from __future__ import annotations

import json

import pytest
from confluent_kafka import Message
from psycopg_pool import ConnectionPool

from sinkframe.mapping.registry import PluginRegistry
from sinkframe.pipeline.batch import Batch, BatchBuilder
from sinkframe.pipeline.consume.positions import PartitionPositions
from sinkframe.pipeline.write.offsets import load_offsets
from sinkframe.pipeline.write.writer import BatchWriter, ResolvedTarget

from sinktest.db import create_tables, dead_letters, query

TOPIC = "poison.test"
GROUP = "sinkframe-poison"


@pytest.fixture
def pool(pg_dsn):
    create_tables(pg_dsn)
    with ConnectionPool(pg_dsn, min_size=1, max_size=2, open=True) as pool:
        yield pool


def make_writer(pool, plugin: str = "raw", method: str = "copy") -> tuple[BatchWriter, object]:
    mapper = PluginRegistry().get(plugin)({})
    targets = {role: ResolvedTarget(role, t.default_table, t) for role, t in mapper.targets.items()}
    writer = BatchWriter(pool, connector="poison", group_id=GROUP, topic=TOPIC, targets=targets,
                         method=method, dead_letter_table="sinkframe_dead_letters")
    writer.ensure_framework_tables()
    return writer, mapper


def batch_of(writer: BatchWriter, mapper, messages: list[tuple[int, int, dict]]) -> Batch:
    """A batch as the consumer task builds it, from (partition, offset, message) triples."""
    builder = BatchBuilder(TOPIC, mapper, positions=PartitionPositions("poison", TOPIC))
    builder.add([Message(topic=TOPIC, partition=partition, offset=offset, key=b"k%d" % offset,
                         value=json.dumps(value).encode(), timestamp=(1, 1_700_000_000_000 + offset))
                 for partition, offset, value in messages])
    return builder.take()


def raw_message(i: int, payload=None) -> dict:
    return {"device_id": f"dev-{i}", "timestamp": 1_700_000_000 + i, "payload": payload or {"i": i}}


@pytest.mark.parametrize("method", ["copy", "insert"])
def test_refused_rows_are_dead_lettered_and_the_rest_commits_in_one_transaction(pool, pg_dsn, method):
    writer, mapper = make_writer(pool, method=method)
    bad = {(0, 3), (0, 17), (1, 8), (1, 9)}  # adjacent bad records too
    messages = [(p, o, raw_message(p * 100 + o, {"note": "nul \u0000 here"} if (p, o) in bad else None))
                for p in (0, 1) for o in range(20)]
    batch = batch_of(writer, mapper, messages)

    outcome = writer.write(batch, {0: None, 1: None})

    assert {(d.partition, d.offset) for d in outcome.rejected} == bad
    assert outcome.next_offsets == {0: 20, 1: 20}
    stored = query(pg_dsn, "SELECT source_partition, source_offset FROM iot_raw_data")
    assert sorted(stored) == sorted((p, o) for p, o, _ in messages if (p, o) not in bad)
    letters = dead_letters(pg_dsn)
    assert [(r[1], r[2]) for r in letters] == sorted(bad)
    for topic, partition, offset, stage, error_class, error_message, sqlstate, key, value in letters:
        assert (topic, stage, error_class, sqlstate) == (TOPIC, "write", "UntranslatableCharacter", "22P05")
        assert "unsupported Unicode escape sequence" in error_message
        assert key == b"k%d" % offset
        assert json.loads(value)["payload"] == {"note": "nul \u0000 here"}  # the original bytes, intact
    with pool.connection() as conn:
        assert load_offsets(conn, GROUP, TOPIC) == {0: 20, 1: 20}


def test_constraint_violations_and_out_of_range_values_are_isolated(pg_dsn):
    # A deployment's table may be stricter than the mapper: a CHECK constraint and a
    # smallint column. Rows breaking them are refused by the database (23514, 22003).
    from sinktest.db import TABLES

    strict = TABLES["smart_breaker_data"].replace("temperature double precision",
                                                  "temperature double precision CHECK (temperature < 200)")
    strict = strict.replace("trip_count integer", "trip_count smallint")
    create_tables(pg_dsn, {"smart_breaker_data": strict})
    with ConnectionPool(pg_dsn, min_size=1, max_size=1) as pool:
        writer, mapper = make_writer(pool, plugin="smart_breaker", method="insert")
        values = {2: {"temperature": 999.0}, 5: {"trip_count": 40_000}, 6: {"temperature": 1e300}}
        messages = [(0, o, {"device_id": f"breaker-{o}", "timestamp": 1_700_000_000 + o,
                            "measurements": {"temperature": 20.0, "trip_count": 1, **values.get(o, {})},
                            "metadata": {"model": f"m{o}"}}) for o in range(8)]
        outcome = writer.write(batch_of(writer, mapper, messages), {0: None})

    refused = {d.offset: (d.sqlstate, d.error_class) for d in outcome.rejected}
    assert refused == {2: ("23514", "CheckViolation"), 5: ("22003", "NumericValueOutOfRange"),
                       6: ("23514", "CheckViolation")}
    assert sorted(r[0] for r in query(pg_dsn, "SELECT source_offset FROM smart_breaker_data")) == [0, 1, 3, 4, 7]
    # A refused record's rows in *every* table are left out: its metadata upsert too.
    assert sorted(r[0] for r in query(pg_dsn, "SELECT device_id FROM device_metadata")) == \
        [f"breaker-{o}" for o in (0, 1, 3, 4, 7)]


def test_tolerance_none_commits_each_partition_up_to_its_first_refused_record(pool, pg_dsn):
    writer, mapper = make_writer(pool)
    bad = {(0, 4), (0, 7), (2, 0)}
    messages = [(p, o, raw_message(o, {"s": "\u0000"} if (p, o) in bad else None))
                for p in (0, 1, 2) for o in range(10)]
    writer.dead_letter_table = None  # as the runner configures a connector with errors.tolerance none

    outcome = writer.write(batch_of(writer, mapper, messages), {0: None, 1: None, 2: None}, tolerate=False)

    assert [(d.partition, d.offset, d.sqlstate) for d in outcome.stopped_at] == [(0, 4, "22P05"), (2, 0, "22P05")]
    assert outcome.rejected == []
    assert outcome.next_offsets == {0: 4, 1: 10}  # partition 2 made no progress at all
    stored = sorted(query(pg_dsn, "SELECT source_partition, source_offset FROM iot_raw_data"))
    assert stored == [(0, o) for o in range(4)] + [(1, o) for o in range(10)]
    with pool.connection() as conn:
        assert load_offsets(conn, GROUP, TOPIC) == {0: 4, 1: 10}
    assert query(pg_dsn, "SELECT to_regclass('sinkframe_dead_letters') IS NOT NULL") == [(True,)]
    assert dead_letters(pg_dsn) == []


def test_a_duplicate_key_within_one_batch_refuses_only_the_later_record(pg_dsn):
    # A unique index the mapper does not know about: the second record with the same
    # (device_id, time) is refused (23505), the first one lands.
    create_tables(pg_dsn)
    query_unique = "CREATE UNIQUE INDEX ON iot_raw_data (device_id, time)"
    with ConnectionPool(pg_dsn, min_size=1, max_size=1) as pool:
        with pool.connection() as conn:
            conn.execute(query_unique)
        writer, mapper = make_writer(pool)
        messages = [(0, o, {"device_id": "same", "timestamp": 1_700_000_000 + (o if o != 6 else 2)})
                    for o in range(10)]
        outcome = writer.write(batch_of(writer, mapper, messages), {0: None})
    assert [(d.offset, d.sqlstate) for d in outcome.rejected] == [(6, "23505")]
    assert sorted(r[0] for r in query(pg_dsn, "SELECT source_offset FROM iot_raw_data")) == \
        [0, 1, 2, 3, 4, 5, 7, 8, 9]


def test_a_batch_with_every_record_refused_commits_only_dead_letters_and_offsets(pool, pg_dsn):
    writer, mapper = make_writer(pool)
    messages = [(0, o, raw_message(o, {"s": "\u0000"})) for o in range(5)]
    outcome = writer.write(batch_of(writer, mapper, messages), {0: None})
    assert len(outcome.rejected) == 5
    assert query(pg_dsn, "SELECT count(*) FROM iot_raw_data") == [(0,)]
    assert len(dead_letters(pg_dsn)) == 5
    with pool.connection() as conn:
        assert load_offsets(conn, GROUP, TOPIC) == {0: 5}


@pytest.mark.parametrize("method", ["copy", "insert"])
def test_many_refused_records_spread_over_several_isolation_chunks(pool, pg_dsn, method):
    import time

    writer, mapper = make_writer(pool, method=method)
    bad = {(p, o) for p in (0, 1) for o in range(1000) if o % 7 == 3}
    messages = [(p, o, raw_message(o, {"s": "\u0000"} if (p, o) in bad else None)) for p in (0, 1) for o in range(1000)]
    started = time.monotonic()
    outcome = writer.write(batch_of(writer, mapper, messages), {0: None, 1: None})
    assert time.monotonic() - started < 15
    assert {(d.partition, d.offset) for d in outcome.rejected} == bad
    stored = query(pg_dsn, "SELECT source_partition, source_offset FROM iot_raw_data")
    assert len(stored) == len(set(stored)) == 2000 - len(bad)
    assert set(stored).isdisjoint(bad)


@pytest.mark.parametrize("method", ["copy", "insert"])
def test_a_refused_metadata_upsert_is_isolated_like_any_row(pg_dsn, method):
    # The copy method stages keyed rows by COPY before one upsert merges them: a row the
    # upsert refuses must cost only its record, as a refused array row does with `insert`.
    from sinktest.db import TABLES

    strict = TABLES["device_metadata"].replace("model text", "model text CHECK (model <> 'recalled')")
    create_tables(pg_dsn, {"device_metadata": strict})
    with ConnectionPool(pg_dsn, min_size=1, max_size=1) as pool:
        writer, mapper = make_writer(pool, plugin="smart_breaker", method=method)
        messages = [(0, o, {"device_id": f"breaker-{o % 3}", "timestamp": 1_700_000_000 + o,
                            "measurements": {"temperature": 20.0, "trip_count": 1},
                            "metadata": {"model": "recalled" if o == 7 else f"m{o}"}}) for o in range(9)]
        outcome = writer.write(batch_of(writer, mapper, messages), {0: None})
        # The stage is left empty for the connection's next batch.
        again = writer.write(batch_of(writer, mapper, [(0, 9, {
            "device_id": "breaker-0", "timestamp": 1_700_000_100, "measurements": {"temperature": 1.0},
            "metadata": {"manufacturer": "Acme"}})]), {0: 9})

    # Offset 7 is breaker-1's newest record, so its row is the one the upsert sends.
    assert [(d.offset, d.sqlstate) for d in outcome.rejected] == [(7, "23514")]
    assert again.rejected == [] and again.next_offsets == {0: 10}
    assert sorted(r[0] for r in query(pg_dsn, "SELECT source_offset FROM smart_breaker_data")) == \
        [0, 1, 2, 3, 4, 5, 6, 8, 9]
    # Without offset 7, breaker-1's newest is offset 4; breaker-0 took Acme from offset 9 and kept its model.
    assert query(pg_dsn, "SELECT device_id, manufacturer, model FROM device_metadata ORDER BY 1") == \
        [("breaker-0", "Acme", "m6"), ("breaker-1", None, "m4"), ("breaker-2", None, "m8")]


@pytest.mark.parametrize("method", ["copy", "insert"])
def test_gap_fillers_and_newest_rows_merge_in_one_transaction(pool, pg_dsn, method):
    # merge_keyed_rows splits a key's rows in two upserts (older values filling gaps, then the
    # newest): with the copy method both pass through the same stage within one transaction.
    writer, mapper = make_writer(pool, plugin="smart_breaker", method=method)
    messages = [(0, 0, {"device_id": "b", "timestamp": 1_700_000_000, "measurements": {},
                        "metadata": {"manufacturer": "Acme", "model": "old"}}),
                (0, 1, {"device_id": "b", "timestamp": 1_700_000_060, "measurements": {},
                        "metadata": {"model": "new"}})]
    outcome = writer.write(batch_of(writer, mapper, messages), {0: None})

    assert outcome.rejected == []
    assert query(pg_dsn, "SELECT manufacturer, model, first_seen < last_seen FROM device_metadata") == \
        [("Acme", "new", True)]
