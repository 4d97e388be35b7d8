"""A backlog drains with the sink's peak RSS bounded, whatever the backlog's size.

What the process holds: one batch (batch.max_rows messages, as rows and as the
original messages) plus librdkafka's prefetch queue (queued.max.messages.kbytes,
16 MB by default in sinkframe). How full the batches get depends on how fast the
database takes them (see PEAK_RSS_BOUND_MIB).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer

from sinktest.config import sink_env, write_connector
from sinktest.db import create_tables, row_counts
from sinktest.paths import REPO

pytestmark = pytest.mark.slow

BACKLOG = 200_000
# The bound at the default settings: docs/reliability.md's estimate for one connector (about 60 MiB
# plus two batches and the prefetch queue) with room for noise. The sink measured about 150 MiB here,
# alone and in the whole suite alike; memory that grew with the backlog would not pass: 200k
# messages held at once take well over the bound.
PEAK_RSS_BOUND_MIB = 200


def produce_backlog(bootstrap: str, topic: str, count: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.size": 1_000_000})
    for i in range(count):
        value = json.dumps({"device_id": f"dev-{i % 1000}", "timestamp": 1_700_000_000 + i,
                            "payload": {"temperature": 20.5, "humidity": 40 + i % 7, "seq": i, "note": "x" * 40}})
        while True:
            try:
                producer.produce(topic, value=value.encode(), key=b"k%d" % (i % 1000))
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(60) == 0


def test_a_200k_message_backlog_drains_with_bounded_peak_rss(kafka_bootstrap, pg_dsn, new_topic, tmp_path):
    topic = new_topic(partitions=4)
    create_tables(pg_dsn)
    produce_backlog(kafka_bootstrap, topic, BACKLOG)
    connector = write_connector(tmp_path, name="memory", topic=topic, max_wait_ms=500)  # default max_rows 20k
    launcher = Path(__file__).with_name("rss_launcher.py")
    started = time.monotonic()
    result = subprocess.run([sys.executable, str(launcher), "run", str(connector), "--exit-when-idle", "3"],
                            env={**os.environ, **sink_env(kafka_bootstrap, pg_dsn)}, cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-3000:]
    assert row_counts(pg_dsn) == (BACKLOG, BACKLOG)
    peak_mib = int(re.search(r"PEAK_RSS_KIB=(\d+)", result.stderr).group(1)) / 1024
    print(f"\n{BACKLOG} messages drained in {elapsed:.1f}s with peak RSS {peak_mib:.0f} MiB")
    assert peak_mib < PEAK_RSS_BOUND_MIB, f"peak RSS {peak_mib:.0f} MiB exceeds {PEAK_RSS_BOUND_MIB} MiB"
