"""All three shipped connectors, end to end: an independent producer -> Tansu -> sinkframe -> PostgreSQL."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from sinkframe.devservices import create_topics, produce

from sinktest.db import query
from sinktest.paths import CONFIGS
from sinktest.sinks import run_until_idle

pytestmark = pytest.mark.slow

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)


def breaker(device: str, seconds: int, **overrides) -> dict:
    measurements = {
        "voltage_phase_a": 230.5, "voltage_phase_b": 229.75, "voltage_phase_c": 231.25,
        "current_phase_a": 10.5, "current_phase_b": 11.0, "current_phase_c": 9.5,
        "temperature": 41.5, "power_factor": 0.97, "frequency": 50.01, "active_power": 7.25,
        "reactive_power": 1.5, "energy_kwh": 1234.5, "breaker_status": "closed", "trip_count": 2,
    }
    measurements.update(overrides)
    return {"device_id": device, "timestamp": int(T0.timestamp()) + seconds, "device_type": "smart_breaker",
            "measurements": measurements,
            "metadata": {"manufacturer": "Acme", "model": "SB-3", "firmware_version": "2.1.0",
                         "location": "Plant 1", "capabilities": ["trip", "meter"]},
            "fdi_package": {"package_id": "fdi-sb3", "version": "1.4"}}


def test_three_connectors_land_every_message_with_correct_values(kafka_bootstrap, sink_env, topics):
    for topic in topics.values():
        create_topics(kafka_bootstrap, [topic], partitions=3)
    raw = [{"device_id": f"sensor-{i % 7}", "timestamp": (T0.timestamp() + i) * 1000, "topic": f"devices/{i % 7}/up",
            "payload": {"seq": i, "ok": True, "nested": {"x": [1, 2]}}} for i in range(300)]
    enriched = [{"device_id": f"meter-{i % 5}", "timestamp": f"2026-11-20T12:{i // 60:02d}:{i % 60:02d}+01:00",
                 "device_type": "power_meter", "payload": {"kwh": i / 10},
                 "metadata": {"manufacturer": "Volt", "model": "PM-2", "firmware_version": f"1.{i}",
                              "location": "Hall B", "capabilities": ["kwh"]},
                 "fdi_package": {"package_id": "fdi-pm2", "version": "3.0", "vendor": "Volt"}} for i in range(200)]
    breakers = [breaker(f"breaker-{i % 4}", i) for i in range(400)]
    breakers.append({"device_id": "breaker-top", "timestamp": "2026-11-20T13:00:00Z",
                     "voltage_phase_a": 228.0, "trip_count": 5, "breaker_status": "open", "harmonics_thd": 3.2})
    key = lambda m: m["device_id"].encode()  # noqa: E731
    produce(kafka_bootstrap, topics["RAW_TOPIC"], raw, key=key)
    produce(kafka_bootstrap, topics["ENRICHED_TOPIC"], enriched, key=key)
    produce(kafka_bootstrap, topics["SMART_BREAKER_TOPIC"], breakers, key=key)

    pipeline = run_until_idle(sorted(CONFIGS.glob("*.yaml")), sink_env)
    dsn = sink_env["SINKFRAME_DATABASE_URL"]

    assert sum(t.stats.messages for t in pipeline.tasks) == 300 + 200 + 401
    assert query(dsn, "SELECT count(*), count(DISTINCT (source_partition, source_offset)) FROM iot_raw_data") == [(300, 300)]
    row = query(dsn, "SELECT time, device_id, mqtt_topic, payload, source_topic FROM iot_raw_data "
                     "WHERE payload->>'seq' = '42'")[0]
    assert row == (datetime.fromtimestamp(T0.timestamp() + 42, timezone.utc), "sensor-0", "devices/0/up",
                   {"seq": 42, "ok": True, "nested": {"x": [1, 2]}}, topics["RAW_TOPIC"])

    assert query(dsn, "SELECT count(*) FROM iot_enriched_data") == [(200,)]
    time_, device_type, payload, fdi = query(
        dsn, "SELECT time, device_type, payload, fdi_package FROM iot_enriched_data WHERE payload->>'kwh' = '6.1'")[0]
    assert time_ == datetime(2026, 11, 20, 11, 1, 1, tzinfo=timezone.utc)  # +01:00 stored as UTC
    assert (device_type, payload, fdi["vendor"]) == ("power_meter", {"kwh": 6.1}, "Volt")

    assert query(dsn, "SELECT count(*) FROM smart_breaker_data") == [(401,)]
    values = query(dsn, "SELECT voltage_phase_a, voltage_phase_b, voltage_phase_c, current_phase_a, current_phase_b, "
                        "current_phase_c, temperature, power_factor, frequency, active_power, reactive_power, "
                        "energy_kwh, breaker_status, trip_count, extra_measurements FROM smart_breaker_data "
                        "WHERE device_id = 'breaker-1' ORDER BY time LIMIT 1")[0]
    assert values == (230.5, 229.75, 231.25, 10.5, 11.0, 9.5, 41.5, 0.97, 50.01, 7.25, 1.5, 1234.5, "closed", 2, None)
    top = query(dsn, "SELECT voltage_phase_a, trip_count, breaker_status, extra_measurements FROM smart_breaker_data "
                     "WHERE device_id = 'breaker-top'")
    assert top[0][:3] == (228.0, 5, "open")  # measurements given at the top level are accepted

    meta = dict((r[0], r[1:]) for r in query(
        dsn, "SELECT device_id, device_type, manufacturer, firmware_version, capabilities, fdi_package_id, "
             "fdi_package_version FROM device_metadata"))
    assert set(meta) == {f"meter-{i}" for i in range(5)} | {f"breaker-{i}" for i in range(4)}
    assert meta["meter-4"] == ("power_meter", "Volt", "1.199", ["kwh"], "fdi-pm2", "3.0")  # newest firmware wins
    assert meta["breaker-0"][:2] == ("smart_breaker", "Acme")

    stored = query(dsn, "SELECT topic, sum(next_offset) FROM sinkframe_offsets GROUP BY topic ORDER BY topic")
    assert dict(stored) == {topics["RAW_TOPIC"]: 300, topics["ENRICHED_TOPIC"]: 200, topics["SMART_BREAKER_TOPIC"]: 401}


def test_device_metadata_never_goes_back_in_time(kafka_bootstrap, sink_env, topics):
    topic = topics["ENRICHED_TOPIC"]
    create_topics(kafka_bootstrap, [topic], partitions=1)

    def message(ts: str, firmware: str | None, location: str | None = "Hall A"):
        metadata = {"manufacturer": "Volt", "model": "PM-2", "location": location, "capabilities": ["kwh"]}
        if firmware is not None:
            metadata["firmware_version"] = firmware
        return {"device_id": "meter-x", "timestamp": ts, "device_type": "power_meter", "payload": {},
                "metadata": metadata, "fdi_package": {"package_id": "p", "version": "1"}}

    # First run: newest first, then an older (out-of-order) message in the same batch.
    produce(kafka_bootstrap, topic, [message("2026-11-20T10:00:00Z", "3.0"),
                                     message("2026-11-20T08:00:00Z", "1.0", location="Old hall")])
    run_until_idle([CONFIGS / "enriched.yaml"], sink_env)
    dsn = sink_env["SINKFRAME_DATABASE_URL"]
    assert query(dsn, "SELECT firmware_version, location, first_seen, last_seen FROM device_metadata") == [
        ("3.0", "Hall A", datetime(2026, 11, 20, 8, tzinfo=timezone.utc), datetime(2026, 11, 20, 10, tzinfo=timezone.utc))]

    # Second run (a separate batch and transaction): older again, then a newer one without firmware.
    produce(kafka_bootstrap, topic, [message("2026-11-20T09:00:00Z", "2.0"),
                                     message("2026-11-20T11:00:00Z", None, location="Hall C")])
    run_until_idle([CONFIGS / "enriched.yaml"], sink_env)
    assert query(dsn, "SELECT firmware_version, location, first_seen, last_seen FROM device_metadata") == [
        ("3.0", "Hall C", datetime(2026, 11, 20, 8, tzinfo=timezone.utc), datetime(2026, 11, 20, 11, tzinfo=timezone.utc))]
    assert query(dsn, "SELECT count(*) FROM iot_enriched_data") == [(4,)]
