"""Hostile and broken messages through the whole path: broker -> sink -> PostgreSQL.

Every message ends either as a row holding exactly what was sent, or as a dead
letter naming its stage and reason; nothing is lost, nothing runs as SQL.
"""
from __future__ import annotations

import json

import pytest
from confluent_kafka import Producer

from sinkframe.errors import ConnectorFailed

from sinktest.config import sink_env, write_connector
from sinktest.db import create_tables, dead_letters, query
from sinktest.sinks import run_until_written

SQLISH = "'); DROP TABLE iot_raw_data; --"

# (what is sent, what must come of it): ("row", device_id, payload) or ("dead", stage, words in the reason)
CASES = [
    ({"device_id": "plain-1", "payload": {"t": 21.5}}, ("row", "plain-1", {"t": 21.5})),
    ({"device_id": SQLISH, "payload": {"q": "'; DELETE FROM sinkframe_offsets; --"}},
     ("row", SQLISH, {"q": "'; DELETE FROM sinkframe_offsets; --"})),
    ({"device_id": 'Robert"); DROP TABLE "sinkframe_dead_letters";--', "payload": {"a": "it's \"quoted\" \\"}},
     ("row", 'Robert"); DROP TABLE "sinkframe_dead_letters";--', {"a": "it's \"quoted\" \\"})),
    ({"device_id": "设备-🚀-ünïcødé-\u200b-עברית", "payload": {"ключ": "值 ✓", "emoji": "🔥" * 3}},
     ("row", "设备-🚀-ünïcødé-\u200b-עברית", {"ключ": "值 ✓", "emoji": "🔥🔥🔥"})),
    ({"device_id": "%s %(x)s $1 {} \\x00 E'\\''", "payload": ["$1", "%s", None, True]},
     ("row", "%s %(x)s $1 {} \\x00 E'\\''", ["$1", "%s", None, True])),
    ({"device_id": 12345, "payload": {"big": 1.5e300, "neg": -9223372036854775808}},
     ("row", "12345", {"big": 1.5e300, "neg": -9223372036854775808})),
    ({"device_id": "nul-in-jsonb", "payload": {"s": "before\u0000after"}}, ("dead", "write", "22P05")),
    ({"device_id": "nul-deep", "payload": {"a": [{"b": "\u0000"}]}}, ("dead", "write", "22P05")),
    ({"device_id": "nul\u0000id", "payload": {}}, ("dead", "map", "device_id")),
    ({"device_id": "year-10000", "timestamp": "10000-01-01T00:00:00Z"}, ("dead", "map", "timestamp")),
    ({"payload": {"no": "device"}}, ("dead", "map", "device_id: missing")),
    (b"\xff\xfe not utf-8", ("dead", "decode", "UTF-8")),
    (b"[1, 2, 3]", ("dead", "decode", "expected a JSON object")),
    (None, ("dead", "decode", "tombstone")),
]


def produce_cases(bootstrap: str, topic: str) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for i, (message, _) in enumerate(CASES):
        value = message if message is None or isinstance(message, bytes) else json.dumps(message).encode()
        producer.produce(topic, value=value, key=SQLISH.encode() + b"\x00\xff",
                         headers=[("trace", b"t-%d" % i), ("nul", b"a\x00b")], partition=0)
    assert producer.flush(30) == 0


def test_every_hostile_message_lands_verbatim_or_is_dead_lettered_with_its_reason(
        kafka_bootstrap, pg_dsn, new_topic, tmp_path):
    topic = new_topic()
    create_tables(pg_dsn)
    produce_cases(kafka_bootstrap, topic)
    connector = write_connector(tmp_path, name="hostile", topic=topic)

    run_until_written([connector], sink_env(kafka_bootstrap, pg_dsn), messages=len(CASES))

    rows = {offset: device_id for offset, device_id in
            query(pg_dsn, "SELECT source_offset, device_id FROM iot_raw_data")}
    letters = {r[2]: r for r in dead_letters(pg_dsn)}
    assert len(rows) + len(letters) == len(CASES)
    for offset, (sent, expected) in enumerate(CASES):
        if expected[0] == "row":
            assert rows.get(offset) == expected[1], f"offset {offset}: {sent!r}"
            # jsonb equality: the stored document is the one sent (numbers compared as numbers).
            assert query(pg_dsn, "SELECT payload = %s::jsonb FROM iot_raw_data WHERE source_offset = %s",
                         (json.dumps(expected[2]), offset)) == [(True,)], f"offset {offset}"
        else:
            _, _, _, stage, error_class, reason, sqlstate, key, value = letters[offset]
            assert stage == expected[1], (offset, reason)
            assert expected[2] in reason or expected[2] == sqlstate, (offset, reason, sqlstate)
            assert key == SQLISH.encode() + b"\x00\xff"  # original bytes, NUL and all
            assert value == (sent if sent is None or isinstance(sent, bytes) else json.dumps(sent).encode())
    headers = query(pg_dsn, "SELECT headers FROM sinkframe_dead_letters ORDER BY kafka_offset LIMIT 1")[0][0]
    assert headers[0][0] == "trace" and headers[1] == ["nul", "a\\x00b"]
    # Nothing was executed: every table is still there, offsets cover every message.
    assert query(pg_dsn, "SELECT count(*) FROM pg_tables WHERE tablename IN "
                         "('iot_raw_data', 'sinkframe_dead_letters', 'sinkframe_offsets')") == [(3,)]
    assert query(pg_dsn, "SELECT partition, next_offset FROM sinkframe_offsets") == [(0, len(CASES))]


def test_tolerance_none_stops_at_the_refused_record_having_committed_only_what_came_before(
        kafka_bootstrap, pg_dsn, new_topic, tmp_path):
    topic = new_topic()
    create_tables(pg_dsn)
    from sinkframe.devservices import produce

    produce(kafka_bootstrap, topic, [{"device_id": f"d{i}", "payload": {"s": "\u0000" if i == 5 else "ok"}}
                                     for i in range(10)])
    connector = write_connector(tmp_path, name="strict", topic=topic, tolerance="none")

    for attempt in range(2):  # re-running does not skip the record, nor duplicate the rows before it
        with pytest.raises(ConnectorFailed) as failed:
            run_until_written([connector], sink_env(kafka_bootstrap, pg_dsn), messages=10)
        message = str(failed.value)
        assert f"{topic}[0]@5: write failed" in message and "SQLSTATE 22P05" in message, message
        assert "errors.tolerance is none" in message
        assert query(pg_dsn, "SELECT count(*), min(source_offset), max(source_offset) FROM iot_raw_data") == \
            [(5, 0, 4)]
        assert query(pg_dsn, "SELECT partition, next_offset FROM sinkframe_offsets") == [(0, 5)]
