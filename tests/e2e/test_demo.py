"""`sinkframe demo` (what `make demo` runs): broker + embedded TimescaleDB + simulator + sink, for real."""
from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from sinkframe.cli import cli

from sinktest.paths import REPO

pytestmark = [pytest.mark.slow, pytest.mark.timescale]


def test_demo_ingests_simulated_fleet_into_timescaledb(monkeypatch):
    monkeypatch.chdir(REPO)
    result = CliRunner().invoke(cli, ["demo", "--devices", "4", "--hours", "3", "--interval", "120",
                                      "--malformed-rate", "0.02"])
    assert result.exit_code == 0, result.output
    out = result.output
    produced = int(re.search(r"produced\s+(\d+) messages", out).group(1))
    ingested = int(re.search(r"ingested\s+(\d+) messages", out).group(1))
    assert produced == ingested > 0
    landed = {name: int(n) for name, n in re.findall(r"^\s+(iot_raw_data|iot_enriched_data|smart_breaker_data|"
                                                      r"device_metadata|sinkframe_dead_letters)\s+(\d+)$", out, re.M)}
    rows = landed["iot_raw_data"] + landed["iot_enriched_data"] + landed["smart_breaker_data"]
    assert rows + landed["sinkframe_dead_letters"] == produced  # every message is a row or a dead letter
    assert landed["device_metadata"] == 4
    assert re.search(r"hourly average voltage, last 24 h \(smart_breaker_data\): [1-9]\d* rows", out)
    assert re.search(r"daily stats, last 7 days \(smart_breaker_daily_stats\): [1-9]\d* rows", out)
