"""The consumer task never writes a record twice, whatever position the consumer is put at."""
from __future__ import annotations

import json

from confluent_kafka import Message

from sinkframe.mapping.registry import PluginRegistry
from sinkframe.pipeline.batch import BatchBuilder
from sinkframe.pipeline.consume.positions import PartitionPositions, PartitionState


def test_records_before_the_stored_offset_are_skipped_not_written_again():
    # librdkafka resets an out-of-range position by auto.offset.reset=earliest (a
    # recreated topic, a broker that lost data): the records it re-delivers below
    # the stored offset are already in the database.
    positions = PartitionPositions("positions", "positions")
    positions.assign([0, 1])
    positions.loaded({0: 5})
    builder = BatchBuilder("positions", PluginRegistry().get("raw")({}), positions=positions)
    for partition in (0, 1):
        builder.add([Message(topic="positions", partition=partition, offset=offset,
                             value=json.dumps({"device_id": "d", "payload": offset}).encode(),
                             timestamp=(1, 1_700_000_000_000)) for offset in range(8)])
    batch = builder.take()
    rows = batch.roles["raw"]
    assert [batch.origin(i) for i in rows.record_index] == [(0, o) for o in range(5, 8)] + [(1, o) for o in range(8)]
    assert rows.columns[6] == [5, 6, 7, *range(8)]  # source_offset
    assert batch.first_offsets == {0: 5, 1: 0} and batch.next_offsets == {0: 8, 1: 8}
    assert positions.skipped_stored == 5


def test_a_write_expects_what_the_previous_one_stored_and_a_reset_goes_back_to_the_database():
    positions = PartitionPositions("c", "t")
    positions.assign([0, 1])
    assert positions.in_state(PartitionState.LOADING) == [0, 1]
    assert positions.loaded({0: 10}) == {0: 10, 1: None}
    # A stored offset is checked against the log end first; nothing stored: read at once.
    assert positions.state == {0: PartitionState.CHECKING, 1: PartitionState.READY}
    assert positions.expected([0, 1]) == {0: 10, 1: None}
    positions.note_read({0: 10, 1: 0})
    positions.committed({0: 30, 1: 7})
    assert positions.expected([0, 1]) == {0: 30, 1: 7}
    positions.note_read({0: 30, 1: 7})  # later batches do not move where a partition was first read
    # The database lost its last commits: it holds partition 0 at 20 and nothing of partition 1.
    positions.reload([0, 1])
    assert positions.loaded({0: 20}) == {0: 20, 1: 0}
    assert positions.expected([0, 1]) == {0: 20, 1: None}
    positions.revoke([1])
    positions.reload([0, 1])
    assert positions.loaded({}) == {0: 10} and positions.expected([1]) == {1: None}


def test_a_partition_restarted_past_the_log_end_skips_nothing_and_still_expects_the_stored_offset():
    positions = PartitionPositions("c", "t")
    positions.assign([0])
    positions.loaded({0: 500})
    assert positions.skip_below(0) == 500
    positions.restart(0)
    assert positions.ready(0) and positions.skip_below(0) is None and positions.expected([0]) == {0: 500}
    positions.committed({0: 40})
    assert positions.skip_below(0) == 40 and positions.expected([0]) == {0: 40}
