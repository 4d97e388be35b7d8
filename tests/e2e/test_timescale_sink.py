"""The sink writing into real hypertables: late data into a compressed chunk, and continuous
aggregates that agree with Python after a refresh.

Twice: on the test's TimescaleDB with the sink's defaults (binary COPY, the default pool,
prepared statements; the embedded engine stands in when no real server exists), and on
the embedded engine itself (`make demo` runs on it: insert method, one connection).
"""
from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime, timedelta, timezone

import pytest

from sinkframe.devservices import create_topics, produce

from sinktest.config import FAST_GROUP_JOIN
from sinktest.paths import CONFIGS, REPO
from sinktest.sinks import run_until_idle

pytestmark = [pytest.mark.slow, pytest.mark.timescale]

DAY = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=2)


def reading(device: str, minute: int, voltage: float) -> dict:
    return {"device_id": device, "timestamp": (DAY + timedelta(minutes=minute)).isoformat(),
            "device_type": "smart_breaker",
            "measurements": {"voltage_phase_a": voltage, "current_phase_a": voltage / 20, "temperature": 30.0,
                             "active_power": voltage / 100, "breaker_status": "closed", "trip_count": 0}}


def late_data_and_caggs(kafka_bootstrap, timescale, topics) -> None:
    topic = topics["SMART_BREAKER_TOPIC"]
    create_topics(kafka_bootstrap, [topic], partitions=2)
    env = {"REDPANDA_BROKERS": kafka_bootstrap, "SINKFRAME_DATABASE_URL": timescale.dsn,
           "SINKFRAME_SCHEMA_DIR": str(REPO / "schema"), **timescale.sink_env, **FAST_GROUP_JOIN, **topics}
    devices = f"b{uuid.uuid4().hex[:6]}-"  # the engine's database may hold another test's rows
    first = [reading(f"{devices}{i % 3}", i, 220.0 + i % 17) for i in range(0, 180)]
    produce(kafka_bootstrap, topic, first, key=lambda m: m["device_id"].encode())
    run_until_idle([CONFIGS / "smart_breaker.yaml"], env)

    with timescale.connect() as conn:
        chunks = conn.execute("SELECT compress_chunk(c, if_not_compressed => true) "
                              "FROM show_chunks('smart_breaker_data') c").fetchall()
        assert chunks, "the rows should sit in at least one chunk"
        assert conn.execute("SELECT bool_and(is_compressed) FROM timescaledb_information.chunks "
                            "WHERE hypertable_name = 'smart_breaker_data'").fetchone() == (True,)

    late = [reading(f"{devices}{i % 3}", i + 1, 240.0 + i % 5) for i in range(0, 60)]  # same day, compressed
    produce(kafka_bootstrap, topic, late, key=lambda m: m["device_id"].encode())
    timescale.settle()
    run_until_idle([CONFIGS / "smart_breaker.yaml"], env)

    expected = defaultdict(list)
    for message in first + late:
        hour = datetime.fromisoformat(message["timestamp"]).replace(minute=0)
        expected[(hour, message["device_id"])].append(message["measurements"]["voltage_phase_a"])
    mine = [f"{devices}%"]
    with timescale.connect() as conn:
        assert conn.execute("SELECT count(*) FROM smart_breaker_data WHERE device_id LIKE %s", mine).fetchone() \
            == (240,)
        conn.execute("CALL refresh_continuous_aggregate('smart_breaker_hourly_stats', NULL, NULL)")
        rows = conn.execute("SELECT bucket, device_id, avg_voltage_phase_a, min_voltage_phase_a, "
                            "max_voltage_phase_a, sample_count FROM smart_breaker_hourly_stats "
                            "WHERE device_id LIKE %s", mine).fetchall()
    got = {(bucket, device): (avg, lo, hi, n) for bucket, device, avg, lo, hi, n in rows}
    assert set(got) == set(expected)
    for key, values in expected.items():
        avg, lo, hi, n = got[key]
        assert (lo, hi, n) == (min(values), max(values), len(values))
        assert avg == pytest.approx(sum(values) / len(values))


def test_late_data_into_compressed_chunk_and_caggs_match_python(kafka_bootstrap, timescale, topics):
    late_data_and_caggs(kafka_bootstrap, timescale, topics)


def test_the_same_on_the_embedded_engine(kafka_bootstrap, timescale_engine, topics):
    late_data_and_caggs(kafka_bootstrap, timescale_engine, topics)
