"""Property-based: arbitrary bytes and JSON through decode -> validate -> map -> write.

Whatever arrives, every message ends as rows or as a dead letter, the counts add
up, and the pipeline never raises.
"""
from __future__ import annotations

import json
import uuid

import pytest
from confluent_kafka import Message
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from psycopg import sql
from psycopg_pool import ConnectionPool

from sinkframe.config.connector import ConnectorConfig
from sinkframe.mapping.registry import PluginRegistry
from sinkframe.pipeline.task import ConnectorTask
from sinkframe.pipeline.write.writer import BatchWriter, ResolvedTarget

from sinktest.db import create_tables, query

json_scalars = (st.none() | st.booleans() | st.integers(min_value=-(2 ** 63), max_value=2 ** 63 - 1)
                | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20)
                | st.sampled_from(["", "\u0000", "nul\u0000mid", "'); DROP TABLE x; --", "\U0001f680", "1e400",
                                   "2024-01-01T00:00:00Z", "-1", "9999999999999999999"]))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
# Shaped like device messages, so that mapping gets far enough to meet the database.
device_messages = st.fixed_dictionaries(
    {"device_id": st.one_of(st.text(max_size=12), st.integers(), st.sampled_from(["dev-1", "x\u0000y"])),
     "timestamp": st.one_of(st.none(), st.integers(-10 ** 12, 10 ** 18), st.floats(), st.text(max_size=25)),
     "payload": json_values},
    optional={"measurements": st.dictionaries(st.sampled_from(["temperature", "trip_count", "breaker_status",
                                                                "voltage_phase_a", "custom"]), json_scalars),
              "metadata": st.dictionaries(st.sampled_from(["model", "location", "capabilities"]), json_values),
              "device_type": json_scalars})
message_bytes = st.one_of(
    st.binary(max_size=40),
    json_values.map(lambda v: json.dumps(v).encode()),
    device_messages.map(lambda v: json.dumps(v).encode()),
    device_messages.map(lambda v: json.dumps(v, ensure_ascii=False).encode("utf-8", "surrogatepass")),
    st.none(),
)
VALIDATION = {"type": "object", "properties": {"payload": {"not": {"type": "string", "maxLength": 0}}}}


def connector(plugin: str, topic: str, *, validation: dict | None = None) -> ConnectorConfig:
    return ConnectorConfig(name="prop", topic=topic, plugin=plugin, plugin_config={}, tables={}, max_rows=1000,
                           max_wait_ms=1000, tolerance="all", dead_letter_table="sinkframe_dead_letters",
                           dead_letter_topic=None, group_id="sinkframe-prop", consumer_properties={},
                           message_schema=validation)


def task_for(plugin: str, topic: str, pool=None, method: str = "copy") -> ConnectorTask:
    mapper = PluginRegistry().get(plugin)({})
    targets = {role: ResolvedTarget(role, t.default_table, t) for role, t in mapper.targets.items()}
    writer = BatchWriter(pool, connector="prop", group_id="sinkframe-prop", topic=topic, targets=targets,
                         method=method, dead_letter_table="sinkframe_dead_letters")
    return ConnectorTask(connector(plugin, topic, validation=VALIDATION), mapper, writer,
                         {"bootstrap.servers": "unused:9092"})


def feed(task: ConnectorTask, values: list[bytes | None]) -> None:
    task.builder.add([Message(topic=task.connector.topic, partition=0, offset=offset, key=None, value=value,
                              timestamp=(1, 1_700_000_000_000 + offset)) for offset, value in enumerate(values)])


@pytest.mark.parametrize("plugin", ["raw", "enriched", "smart_breaker"])
@settings(max_examples=150, deadline=None)
@given(values=st.lists(message_bytes, min_size=1, max_size=15))
def test_every_message_becomes_rows_or_a_dead_letter_never_an_exception(plugin, values):
    task = task_for(plugin, "prop")
    feed(task, values)
    batch = task.builder.batch
    with_rows = {batch.origin(i)[1] for columns in batch.roles.values() for i in columns.record_index}
    dead = [d.offset for d in batch.dead_letters]
    assert batch.message_count == len(values)
    assert len(dead) == len(set(dead)) and not with_rows & set(dead)
    # A mapper may legitimately produce no row for a message; none does for these plugins.
    assert with_rows | set(dead) == set(range(len(values)))
    assert [m.offset() for m in batch.sources] == list(range(len(values)))
    assert batch.next_offsets == {0: len(values)}
    for d in batch.dead_letters:
        assert d.stage in {"decode", "validate", "map"} and d.error_message
        assert d.value == values[d.offset]


@pytest.fixture(scope="module")
def property_db(postgres_admin_dsn):
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    name = f"sinkframe_prop_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_admin_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = make_conninfo("", **{**conninfo_to_dict(postgres_admin_dsn), "dbname": name})
    create_tables(dsn)
    with ConnectionPool(dsn, min_size=1, max_size=2) as pool:
        yield dsn, pool
    with psycopg.connect(postgres_admin_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(message_bytes, min_size=1, max_size=25), plugin=st.sampled_from(["raw", "smart_breaker"]),
       method=st.sampled_from(["copy", "insert"]))
def test_against_postgres_every_message_is_a_row_or_a_dead_letter_exactly_once(property_db, values, plugin, method):
    dsn, pool = property_db
    topic = f"prop.{uuid.uuid4().hex[:10]}"  # each example its own topic: its own offsets and rows
    task = task_for(plugin, topic, pool, method)
    task.writer.ensure_framework_tables()
    feed(task, values)
    outcome = task.writer.write(task.builder.batch, {0: None})

    event(f"write-stage dead letters: {min(len(outcome.rejected), 2)}+")
    table = sql.Identifier("iot_raw_data" if plugin == "raw" else "smart_breaker_data")
    landed = [r[0] for r in query(dsn, sql.SQL("SELECT source_offset FROM {} WHERE source_topic = %s").format(table),
                                  (topic,))]
    dead = query(dsn, "SELECT kafka_offset, stage, value FROM sinkframe_dead_letters WHERE topic = %s", (topic,))
    dead_offsets = [r[0] for r in dead]
    assert len(landed) == len(set(landed)) and len(dead_offsets) == len(set(dead_offsets))
    assert set(landed).isdisjoint(dead_offsets)
    assert sorted(landed + dead_offsets) == list(range(len(values)))
    assert {d.offset for d in outcome.rejected} == {r[0] for r in dead if r[1] == "write"}
    for offset, _stage, value in dead:
        assert (bytes(value) if value is not None else None) == values[offset]
    assert query(dsn, "SELECT next_offset FROM sinkframe_offsets WHERE topic = %s", (topic,)) == [(len(values),)]
