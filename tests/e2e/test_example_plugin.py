"""The README's "Adding a device type" example, run for real: plugin dir + its connector + its table spec."""
from __future__ import annotations

import os

import pytest

from sinkframe.devservices import create_topics, produce

from sinktest.db import query
from sinktest.paths import REPO
from sinktest.sinks import run_until_idle

pytestmark = pytest.mark.slow

EXAMPLES = REPO / "examples"


def test_env_sensor_plugin_from_plugins_dir_ingests_readings(kafka_bootstrap, sink_env, topics):
    topic = f"iot.env_sensor.{topics['RAW_TOPIC'].rsplit('.', 1)[1]}"
    create_topics(kafka_bootstrap, [topic], partitions=2)
    readings = [{"device_id": f"env-{i % 3}", "timestamp": f"2026-11-20T10:{i:02d}:00Z",
                 "temperature": 20.0 + i / 10, "humidity": 40 + i % 20, "battery": 3.1} for i in range(60)]
    produce(kafka_bootstrap, topic, readings + [{"device_id": "env-9", "temperature": 21.0, "humidity": 140}])

    env = {**sink_env, "ENV_SENSOR_TOPIC": topic,
           "SINKFRAME_SCHEMA_DIR": os.pathsep.join([str(REPO / "schema"), str(EXAMPLES / "schema")])}
    run_until_idle([EXAMPLES / "plugins" / "env_sensor.yaml"], env, plugins_dirs=[EXAMPLES / "plugins"])

    dsn = sink_env["SINKFRAME_DATABASE_URL"]
    assert query(dsn, "SELECT count(*), round(avg(temperature)::numeric, 2)::float8 FROM env_sensor_data") == [
        (60, round(sum(r["temperature"] for r in readings) / 60, 2))]
    dead = query(dsn, "SELECT stage, error_message FROM sinkframe_dead_letters")
    assert len(dead) == 1 and dead[0][0] == "map" and "humidity" in dead[0][1]
