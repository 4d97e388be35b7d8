"""`sinkframe demo --degrading N`: fit on the first half, score the second, alarm before the trips (for real)."""
from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from sinkframe.cli import cli

from sinktest.paths import REPO

pytestmark = [pytest.mark.slow, pytest.mark.timescale]


def test_demo_fits_then_scores_and_alarms_the_failing_contact(monkeypatch):
    monkeypatch.chdir(REPO)
    result = CliRunner().invoke(cli, ["demo", "--devices", "6", "--hours", "10", "--interval", "120",
                                      "--malformed-rate", "0", "--degrading", "1", "--seed", "3"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert re.search(r"fitted\s+contact_health version 1 on \d+ rows", out), out
    assert "degrading breakers alarmed before their trip: 1/1; >= 30 min before: 1/1 (100%)" in out, out
    failing = re.search(r"^\s+(breaker-\d+) contact of phase", out, re.M).group(1)
    assert re.search(rf"^\s+{failing}\s+firing", out, re.M), out  # the contact_failing alert fired for it
