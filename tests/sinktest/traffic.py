"""Producing simulator traffic."""
from __future__ import annotations

# Tansu 0.6 answers "latest offset" with the last record *batch*'s base offset + 1,
# not the last record's offset + 1, so watermarks (and lag) are only exact when
# every record is its own batch. Real Kafka and Redpanda do not need this.
ONE_RECORD_PER_BATCH = {"batch.num.messages": "1"}


def send(bootstrap: str, fleet, topics: dict, count: int):
    """Produce `count` simulator messages as fast as possible; all must be delivered."""
    from sinkframe.simulator import produce

    report = produce(bootstrap, fleet, rate=None, count=count, topics=topics, config=ONE_RECORD_PER_BATCH)
    assert report.delivered == count, report.first_error
    return report
