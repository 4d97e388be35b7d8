"""What `sinkframe status` concludes from the offsets it read (pure: no broker, no database)."""
from sinkframe.ops.status import ConnectorStatus, PartitionStatus


def status(*partitions: PartitionStatus) -> ConnectorStatus:
    return ConnectorStatus("smart_breaker", "iot.smart_breaker.enriched", "sinkframe-smart_breaker", True,
                           partitions=list(partitions))


def test_a_stored_offset_past_the_log_end_is_a_problem_though_the_lag_reads_zero():
    report = status(PartitionStatus(0, low=0, high=120, db_stored=5000), PartitionStatus(1, low=0, high=80,
                                                                                          db_stored=80))
    report.judge_log_end()
    assert report.lag == 0
    assert report.problems == [
        "iot.smart_breaker.enriched[0]: stored offset 5000 is past the end of the log (high watermark 120): the "
        "topic was re-created or truncated; see consumer.stored_offset_past_log_end in docs/reliability.md"]


def test_offsets_within_the_log_are_no_problem():
    report = status(PartitionStatus(0, low=0, high=120, db_stored=120), PartitionStatus(1, high=None, db_stored=7))
    report.judge_log_end()
    assert report.problems == []
