"""Fit on history, then score the stream exactly once: alarms, alerts, kill -9 replays, version switches.

Real services: the Tansu broker and a PostgreSQL database of the test's own.
A simulated fleet sends two healthy days (the history) and a third on which one
contact fails; `sinkframe models fit` learns the history, the sink scores the
third day. What the sink stored is compared, bucket by bucket and bit for bit,
with the same rows scored again in one pass (`expected_scores`).
"""
from __future__ import annotations

import json
import logging
import re
import signal
from datetime import datetime, timezone

import numpy as np
import psycopg
import pytest
from click.testing import CliRunner

from sinkframe.cli.main import cli
from sinkframe.config.settings import Settings
from sinkframe.models.fit import fit_models
from sinkframe.models import detector
from sinkframe.models.detector import Rows
from sinkframe.models.params import detector_from_json
from sinkframe.simulator import Fleet, produce

from sinktest.config import FAST_GROUP_JOIN, exported, sink_env
from sinktest.db import query
from sinktest.paths import REPO
from sinktest.sinks import InProcessSink, run_until_idle, start_sink_process
from sinktest.waiting import wait_for

pytestmark = pytest.mark.slow

DAY = 86400.0
T0 = datetime(2026, 3, 2, tzinfo=timezone.utc).timestamp()
INTERVAL = 120.0
CONNECTOR = """\
name: breakers-scored
topic: ${SMART_BREAKER_TOPIC}
mapper:
  plugin: smart_breaker
  config: {update_device_metadata: false}
batch: {max_rows: 1500, max_wait_ms: 200}
models:
  - name: contact_health
    features: [temperature, current_phase_a, current_phase_b, current_phase_c]
    key: device_id
alerts:
  - name: contact_failing
    when: contact_health > 0.8
    severity: critical
"""


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat()


def a_fleet() -> Fleet:
    return Fleet(devices=12, seed=31, kinds=("smart_breaker",), sensor_share=0, degrading=1,
                 degrade_window=(T0 + 2.4 * DAY, T0 + 3 * DAY))


@pytest.fixture
def setup(kafka_bootstrap, new_topic, pg_dsn, tmp_path):
    topic = new_topic(partitions=3, prefix="models")
    path = tmp_path / "breakers.yaml"
    path.write_text(CONNECTOR)
    env = sink_env(kafka_bootstrap, pg_dsn, schema_dir=REPO / "schema", group_join=FAST_GROUP_JOIN,
                   SMART_BREAKER_TOPIC=topic)
    fleet = a_fleet()

    def send(start: float, end: float) -> None:
        report = produce(kafka_bootstrap, fleet, rate=None, backfill=(start, end, INTERVAL),
                         topics={"smart_breaker": topic})
        assert report.failed == 0

    return {"path": path, "env": env, "dsn": pg_dsn, "fleet": fleet, "send": send, "tmp": tmp_path}


def fit(setup, until: float, since: str = "2d") -> str:
    with exported(setup["env"]):
        result = CliRunner().invoke(cli, ["models", "fit", str(setup["path"]), "--since", since, "--until", iso(until)])
    assert result.exit_code == 0, result.output
    return result.output


def fit_in_process(setup, until: float) -> None:
    """As `models fit --since 2d`, through the library (the CLI would set up logging of its own)."""
    with exported(setup["env"]):
        results = fit_models([setup["path"]], Settings.from_env(), since=2 * DAY,
                             until=datetime.fromtimestamp(until, timezone.utc))
    assert len(results) == 1


def stored_scores(dsn: str) -> dict[tuple, tuple]:
    found = query(dsn, "SELECT score_key, extract(epoch FROM bucket)::float8, model_version, score, alarm, rows "
                       "FROM sinkframe_scores WHERE model = 'contact_health'")
    return {(key, bucket): (version, score, alarm, rows) for key, bucket, version, score, alarm, rows in found}


def stored_offsets(dsn: str) -> dict[int, int]:
    """partition -> next offset the sink stored: where the next run starts scoring."""
    return dict(query(dsn, "SELECT partition, next_offset FROM sinkframe_offsets"))


def expected_scores(dsn: str, version: int, since: dict[int, int]) -> dict[tuple, tuple]:
    """The rows from offsets `since` on scored again in one pass, in each partition's offset order, per minute."""
    parameters = query(dsn, "SELECT parameters FROM sinkframe_models WHERE name = 'contact_health' AND version = %s",
                       (version,))[0][0]
    fitted = detector_from_json(parameters, model="expected")
    found = query(dsn, "SELECT device_id, extract(epoch FROM time)::float8, temperature, current_phase_a, "
                       "current_phase_b, current_phase_c FROM smart_breaker_data "
                       "WHERE source_offset >= (%s::jsonb ->> source_partition::text)::bigint "
                       "ORDER BY source_partition, source_offset", (json.dumps({str(p): o for p, o in since.items()}),))
    values = np.array([row[1:] for row in found], dtype=float)
    rows = Rows([row[0] for row in found], values[:, 0], values[:, 1], values[:, 2:])
    result = detector.score(fitted, rows, {})
    expected: dict[tuple, list] = {}
    for key, t, value, alarm in zip(rows.keys, rows.times, result.score, result.alarm):
        if value == value:
            bucket = float(np.floor(t / 60) * 60)
            was = expected.get((key, bucket))
            expected[(key, bucket)] = ((version, float(value), bool(alarm), 1) if was is None else
                                       (version, max(was[1], float(value)), was[2] or bool(alarm), was[3] + 1))
    return expected


def test_fit_then_stream_scores_alarms_and_alerts_the_failing_contact(setup):
    setup["send"](T0, T0 + 2 * DAY)
    run_until_idle([setup["path"]], setup["env"], timeout=180)
    output = fit(setup, until=T0 + 2 * DAY)
    # 12 breakers x 2 days at 2 minutes = 17280 readings, less the few late ones dated before the start
    assert re.search(r"breakers-scored/contact_health: version 1 on 172[0-9]{2} rows, 12 of 12 keys", output), output
    listing = CliRunner().invoke(cli, ["models", "list", "--database-url", setup["dsn"]])
    assert "breakers-scored/contact_health version 1: trained 2026-03-02 00:00 .. 2026-03-03 23:58" in listing.output

    dsn = setup["dsn"]
    history_end = stored_offsets(dsn)
    setup["send"](T0 + 2 * DAY, T0 + 3 * DAY)
    run_until_idle([setup["path"]], setup["env"], timeout=180)
    stored = stored_scores(dsn)
    assert stored == expected_scores(dsn, 1, history_end)
    fault = setup["fleet"].truth()["degrading"][0]
    trip = datetime.fromisoformat(fault["trip"].replace("Z", "+00:00")).timestamp()
    alarmed = {key for (key, bucket), (_, _, alarm, _) in stored.items() if alarm and bucket < trip}
    assert alarmed == {fault["device_id"]}
    first_alarm = min(bucket for (key, bucket), (_, _, alarm, _) in stored.items() if alarm)
    assert trip - first_alarm >= 1800  # at least half an hour of warning
    fired = query(dsn, "SELECT alert_key, state, event_time FROM sinkframe_alerts WHERE alert = 'contact_failing'")
    assert [(key, state) for key, state, _ in fired][:1] == [(fault["device_id"], "firing")]
    assert fired[0][2].timestamp() < trip

    truth = setup["tmp"] / "truth.json"
    truth.write_text(json.dumps(setup["fleet"].truth()))
    with exported(setup["env"]):
        report = CliRunner().invoke(cli, ["models", "evaluate", str(setup["path"]), "--truth", str(truth),
                                          "--since", iso(T0 + 2 * DAY)])
    assert report.exit_code == 0, report.output
    assert "alarmed before their trip: 1/1; >= 30 min before: 1/1 (100%)" in report.output
    assert "false alarms: 0 on 11 healthy breakers" in report.output
    assert "as the sink scored them" in report.output and "us/row" in report.output

    with exported(setup["env"]):
        status = CliRunner().invoke(cli, ["status", str(setup["path"]), "--lookback", "3650d"])
    top = status.output.split("highest model scores (worst first):\n", 1)[1].splitlines()
    assert top[0].startswith(f"    contact_health {fault['device_id']} ") and "ALARM" in top[0], status.output
    assert len(top) == 5

    panel = next(p for p in json.loads((REPO / "deploy/grafana/dashboards/sinkframe.json").read_text())["panels"]
                 if p["title"] == "Worst-scored devices")
    worst = query(dsn, panel["targets"][0]["rawSql"].replace("$__timeFilter(bucket)", "bucket >= to_timestamp(0)"))
    assert worst[0][:2] == (fault["device_id"], "contact_health") and worst[0][3] is True
    assert len(worst) == 12


def test_kill9_mid_stream_then_replay_gives_the_same_scores_once(setup):
    setup["send"](T0, T0 + 2 * DAY)
    run_until_idle([setup["path"]], setup["env"], timeout=180)
    fit(setup, until=T0 + 2 * DAY)
    dsn, log = setup["dsn"], setup["tmp"] / "sink.log"
    history_end = stored_offsets(dsn)
    setup["send"](T0 + 2 * DAY, T0 + 3 * DAY)

    def scored() -> int:
        return query(dsn, "SELECT coalesce(sum(rows), 0) FROM sinkframe_scores")[0][0]

    for _ in range(2):
        sink = start_sink_process([setup["path"]], setup["env"], log)
        before = scored()
        wait_for(lambda: scored() > before, timeout=90, message="scores to land before the kill")
        sink.send_signal(signal.SIGKILL)
        sink.wait(10)
    sink = start_sink_process([setup["path"]], setup["env"], log)
    try:
        wait_for(lambda: query(dsn, "SELECT count(*) FROM smart_breaker_data")[0][0] >= 3 * 8640,
                 timeout=120, message="the third day to be written")
    finally:
        sink.send_signal(signal.SIGTERM)
        assert sink.wait(30) == 0, log.read_text()[-3000:]
    assert query(dsn, "SELECT count(*), count(DISTINCT (source_partition, source_offset)) "
                      "FROM smart_breaker_data") == [(3 * 8640, 3 * 8640)]
    stored = stored_scores(dsn)
    assert stored == expected_scores(dsn, 1, history_end)
    assert sum(rows for _, _, _, rows in stored.values()) > 0.9 * 8640


def test_a_new_version_is_picked_up_mid_stream_and_a_version_that_would_run_code_is_refused(setup, caplog):
    setup["send"](T0, T0 + 2 * DAY)
    run_until_idle([setup["path"]], setup["env"], timeout=180)
    fit_in_process(setup, until=T0 + 2 * DAY)
    dsn = setup["dsn"]
    caplog.set_level(logging.INFO, logger="sinkframe.models")
    sent = 2 * 8640

    def written(count: int) -> None:
        wait_for(lambda: query(dsn, "SELECT coalesce(sum(next_offset), 0) FROM sinkframe_offsets")[0][0] >= count,
                 timeout=120, message=f"{count} messages written")

    with exported(setup["env"]):
        with InProcessSink([setup["path"]], Settings.from_env()):
            setup["send"](T0 + 2 * DAY, T0 + 2.3 * DAY)
            written(sent + 0.3 * 8640)
            fit_in_process(setup, until=T0 + 2.3 * DAY)  # version 2, with the first hours of the third day
            setup["send"](T0 + 2.3 * DAY, T0 + 2.5 * DAY)
            written(sent + 0.5 * 8640)
            # Version 3: a row someone wrote by hand, carrying a pickle instead of parameters.
            with psycopg.connect(dsn) as conn:
                conn.execute("INSERT INTO sinkframe_models (connector, name, version, metrics, parameters) "
                             "VALUES ('breakers-scored', 'contact_health', 3, '{}', to_jsonb(%s::text))",
                             ("gASVIQAAAAAAAACMAm9zlIwGc3lzdGVtlJOUjAV0b3VjaJSFlFKULg==",))
            setup["send"](T0 + 2.5 * DAY, T0 + 2.7 * DAY)
            written(sent + 0.7 * 8640)
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("sinkframe.models")]
    assert any("scoring with version 2 (was 1)" in m for m in messages), messages
    refused = [m for m in messages if "version 3: parameters refused at $" in m]
    assert len(refused) == 1 and "never loaded" in refused[0] and "in use: version 2" in refused[0]
    versions = query(dsn, "SELECT model_version, min(bucket), max(bucket) FROM sinkframe_scores "
                          "GROUP BY 1 ORDER BY 1")
    assert [v for v, _, _ in versions] == [1, 2]
    assert versions[1][2].timestamp() >= T0 + 2.6 * DAY  # version 2 kept scoring after version 3 came
    assert query(dsn, "SELECT DISTINCT model_version FROM sinkframe_model_states") == [(2,)]

    # A sink started now (the newest version refused) scores with the newest version that loads.
    caplog.clear()
    setup["send"](T0 + 2.7 * DAY, T0 + 2.8 * DAY)
    run_until_idle([setup["path"]], setup["env"], timeout=180)
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("sinkframe.models")]
    assert any("scoring with version 2" in m for m in messages), messages
    assert query(dsn, "SELECT max(model_version) FROM sinkframe_scores WHERE bucket >= to_timestamp(%s)",
                 (T0 + 2.7 * DAY + 3600,)) == [(2,)]
