"""The consumer task never writes a record twice, whatever position the consumer is put at."""
from __future__ import annotations

import json

from confluent_kafka import Message

from test_poison_properties import task_for


def test_records_before_the_stored_offset_are_skipped_not_written_again():
    # librdkafka resets an out-of-range position by auto.offset.reset=earliest (a
    # recreated topic, a broker that lost data): the records it re-delivers below
    # the stored offset are already in the database.
    task = task_for("raw", "positions")
    task._believed = {0: 5, 1: None}
    for partition in (0, 1):
        for offset in range(8):
            value = json.dumps({"device_id": "d", "payload": offset}).encode()
            task._add(Message(topic="positions", partition=partition, offset=offset, value=value,
                              timestamp=(1, 1_700_000_000_000)))
    batch = task._batch
    assert sorted(batch.origins["raw"]) == [(0, o) for o in range(5, 8)] + [(1, o) for o in range(8)]
    assert batch.first_offsets == {0: 5, 1: 0} and batch.next_offsets == {0: 8, 1: 8}
    assert task.skipped_stored == 5
