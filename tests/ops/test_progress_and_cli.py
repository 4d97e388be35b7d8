"""The progress line, time arguments, and `sinkframe simulate` against a real broker."""
from __future__ import annotations

import io
import logging
import time
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner
from confluent_kafka import Consumer, TopicPartition

from sinkframe.cli import cli
from sinkframe.ops.progress import Progress, human
from sinkframe.ops.timespec import parse_duration, parse_instant
from sinkframe.pipeline.stats import ConnectorStats
from sinkframe.simulator import Fleet, produce
from sinkframe.simulator.produce import PRODUCED_AT_HEADER, producer_config


class Task:
    def __init__(self, name):
        self.stats = ConnectorStats(name, f"topic-{name}", state="running")


def test_progress_line_shows_rates_lag_and_errors():
    out = io.StringIO()
    tasks = [Task("a"), Task("b")]
    progress = Progress(live=True, stream=out)
    progress.update(tasks, lag=None, now=100.0)
    tasks[0].stats.record_batch(messages=3000, rows={"t": 6000}, dead_letters=2, seconds=0.1, newest_ms=None,
                                next_offsets={})
    tasks[1].stats.errors_by_stage[("decode", "RecordError")] += 2
    progress.update(tasks, lag=1500, now=100.5)  # not yet a second: nothing drawn
    assert out.getvalue() == ""
    tasks[1].stats.state = "waiting-for-database"
    progress.update(tasks, lag=1500, now=102.0)
    line = out.getvalue()
    assert line.startswith("\r\x1b[2Ksinkframe | 1.5k msg/s | 3.0k rows/s | lag 1.5k | errors 2")
    assert "1/2 running" in line and "1 WAITING FOR DATABASE" in line
    progress.close()
    assert out.getvalue().endswith("\n")


def test_without_a_terminal_a_summary_is_logged_periodically(caplog):
    tasks = [Task("a")]
    progress = Progress(live=False, stream=io.StringIO(), summary_every=30)
    with caplog.at_level(logging.INFO, logger="sinkframe.progress"):
        progress.update(tasks, lag=0, now=0.0)
        tasks[0].stats.messages = 600
        progress.update(tasks, lag=0, now=10.0)
        assert not caplog.records
        progress.update(tasks, lag=0, now=30.0)
    assert [r.getMessage() for r in caplog.records] == [
        "20 msg/s | 0 rows/s | lag 0 | errors 0 | total 600 msgs / 0 rows | 1/1 running"]


def test_human_numbers():
    assert [human(n) for n in (0, 999, 1000, 1234, 2_500_000, 3e9)] == ["0", "999", "1.0k", "1.2k", "2.5M", "3.0G"]


def test_durations_and_instants():
    assert [parse_duration(t) for t in ("90", "90s", "15m", "24h", "7d", "2w", "500ms", "1.5h")] == \
        [90, 90, 900, 86400, 604800, 1209600, 0.5, 5400]
    now = datetime(2026, 1, 31, 12, tzinfo=timezone.utc)
    assert parse_instant("24h", now=now) == now - timedelta(days=1)
    assert parse_instant("now", now=now) == now
    assert parse_instant("2026-01-30T08:00:00Z") == datetime(2026, 1, 30, 8, tzinfo=timezone.utc)
    assert parse_instant("2026-01-30 08:00") == datetime(2026, 1, 30, 8, tzinfo=timezone.utc)
    assert parse_instant("2026-01-30T08:00:00+02:00").utcoffset() == timedelta(hours=2)
    for bad in ("yesterday", "10 parsecs", ""):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_producer_config_drops_consumer_settings():
    assert producer_config({"bootstrap.servers": "b:9092", "session.timeout.ms": "6000", "group.id": "g",
                            "security.protocol": "SASL_SSL", "auto.offset.reset": "earliest"}) == \
        {"bootstrap.servers": "b:9092", "security.protocol": "SASL_SSL"}


@pytest.mark.slow
def test_produce_keeps_the_rate_and_stamps_the_produce_time(kafka_bootstrap, topics):
    started = time.time()
    report = produce(kafka_bootstrap, Fleet(devices=10, seed=1), rate=400, duration=1.5, topics=topics)
    assert report.failed == 0 and report.delivered == report.sent
    assert 500 <= report.sent <= 640  # 400/s for 1.5 s
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": "t", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topics["smart_breaker"], p, 0) for p in range(3)])
    message = consumer.consume(1, timeout=10)[0]
    consumer.close()
    stamped = int(dict(message.headers())[PRODUCED_AT_HEADER])
    assert message.timestamp()[1] == stamped and started * 1000 <= stamped <= time.time() * 1000


@pytest.mark.slow
def test_simulate_command(kafka_bootstrap, monkeypatch):
    monkeypatch.setenv("SMART_BREAKER_TOPIC", "cli.breakers")
    result = CliRunner().invoke(cli, ["simulate", "--brokers", kafka_bootstrap, "--devices", "3", "--count", "90",
                                      "--rate", "0", "--kind", "smart_breaker", "--malformed-rate", "0.1",
                                      "--partitions", "2"])
    assert result.exit_code == 0, result.output
    assert "created topics: cli.breakers" in result.stderr
    assert "sent 90 messages" in result.stderr and "delivered 90, failed 0" in result.stderr

    backfill = CliRunner().invoke(cli, ["simulate", "--brokers", kafka_bootstrap, "--devices", "2",
                                        "--backfill", "1h", "--interval", "5m", "--rate", "0",
                                        "--topic", "raw=cli.raw", "--kind", "raw", "--sensor-share", "0"])
    assert backfill.exit_code == 0, backfill.output
    assert "sent 24 messages" in backfill.stderr  # 2 devices x 12 readings

    bad = CliRunner().invoke(cli, ["simulate", "--topic", "mqtt=x", "--count", "1", "--brokers", kafka_bootstrap])
    assert bad.exit_code == 2 and "KIND=TOPIC" in bad.output
