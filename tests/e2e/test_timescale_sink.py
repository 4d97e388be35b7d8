"""The sink writing into real hypertables (embedded TimescaleDB engine): late data into a
compressed chunk, and continuous aggregates that agree with Python after a refresh."""
from __future__ import annotations

import time
from collections import defaultdict
from datetime import datetime, timedelta, timezone

import pytest

from sinkframe.devservices import create_topics, produce

from sinktest.config import FAST_GROUP_JOIN
from sinkframe.devservices import connect_to_engine
from sinktest.paths import CONFIGS, REPO
from sinktest.sinks import run_until_idle

pytestmark = [pytest.mark.slow, pytest.mark.timescale]

DAY = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=2)


def reading(device: str, minute: int, voltage: float) -> dict:
    return {"device_id": device, "timestamp": (DAY + timedelta(minutes=minute)).isoformat(),
            "device_type": "smart_breaker",
            "measurements": {"voltage_phase_a": voltage, "current_phase_a": voltage / 20, "temperature": 30.0,
                             "active_power": voltage / 100, "breaker_status": "closed", "trip_count": 0}}


def test_late_data_into_compressed_chunk_and_caggs_match_python(kafka_bootstrap, timescale_dsn, topics):
    topic = topics["SMART_BREAKER_TOPIC"]
    create_topics(kafka_bootstrap, [topic], partitions=2)
    env = {"REDPANDA_BROKERS": kafka_bootstrap, "SINKFRAME_DATABASE_URL": timescale_dsn,
           "SINKFRAME_SCHEMA_DIR": str(REPO / "schema"), "SINKFRAME_DB_POOL_SIZE": "1",
           "SINKFRAME_WRITE_METHOD": "insert", "SINKFRAME_DB_PREPARE_THRESHOLD": "off", **FAST_GROUP_JOIN, **topics}
    first = [reading(f"b{i % 3}", i, 220.0 + i % 17) for i in range(0, 180)]
    produce(kafka_bootstrap, topic, first, key=lambda m: m["device_id"].encode())
    run_until_idle([CONFIGS / "smart_breaker.yaml"], env)

    with connect_to_engine(timescale_dsn) as conn:
        chunks = conn.execute("SELECT compress_chunk(c) FROM show_chunks('smart_breaker_data') c").fetchall()
        assert chunks, "the rows should sit in at least one chunk"
        assert conn.execute("SELECT bool_and(is_compressed) FROM timescaledb_information.chunks "
                            "WHERE hypertable_name = 'smart_breaker_data'").fetchone() == (True,)

    late = [reading(f"b{i % 3}", i + 1, 240.0 + i % 5) for i in range(0, 60)]  # same day, already compressed
    produce(kafka_bootstrap, topic, late, key=lambda m: m["device_id"].encode())
    time.sleep(1.0)  # the engine frees its one connection slot a moment after a client leaves (SERVICES.md)
    run_until_idle([CONFIGS / "smart_breaker.yaml"], env)

    expected = defaultdict(list)
    for message in first + late:
        hour = datetime.fromisoformat(message["timestamp"]).replace(minute=0)
        expected[(hour, message["device_id"])].append(message["measurements"]["voltage_phase_a"])
    with connect_to_engine(timescale_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM smart_breaker_data").fetchone() == (240,)
        conn.execute("CALL refresh_continuous_aggregate('smart_breaker_hourly_stats', NULL, NULL)")
        rows = conn.execute("SELECT bucket, device_id, avg_voltage_phase_a, min_voltage_phase_a, "
                            "max_voltage_phase_a, sample_count FROM smart_breaker_hourly_stats").fetchall()
    got = {(bucket, device): (avg, lo, hi, n) for bucket, device, avg, lo, hi, n in rows}
    assert set(got) == set(expected)
    for key, values in expected.items():
        avg, lo, hi, n = got[key]
        assert (lo, hi, n) == (min(values), max(values), len(values))
        assert avg == pytest.approx(sum(values) / len(values))
