"""`sinkframe demo --degrading N`: fit on the history, score the day after it, alarm before the trips (for real)."""
from __future__ import annotations

import re
import shlex
from datetime import datetime, timedelta, timezone

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


def _make_demo_args() -> list[str]:
    """The arguments `make demo` passes (DEMO_ARGS in the Makefile)."""
    found = re.search(r"^DEMO_ARGS \?=(.*)$", (REPO / "Makefile").read_text(), re.M)
    return shlex.split(found.group(1))


# The scores depend on where the simulated days fall in the daily load cycle, i.e. on the hour the demo
# ends at. When the demo fitted on a single day, ending at either of these hours gave false alarms.
@pytest.mark.parametrize("utc_hour", [0, 17], ids=lambda hour: f"ending-{hour:02d}h-utc")
def test_make_demo_alarms_only_the_failing_contacts_whatever_the_hour(monkeypatch, utc_hour):
    monkeypatch.chdir(REPO)
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    end = today - timedelta(days=1) + timedelta(hours=utc_hour)  # yesterday: in the past, within retention
    result = CliRunner().invoke(cli, ["demo", *_make_demo_args(), "--end", end.strftime("%Y-%m-%dT%H:%M:%SZ")])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "degrading breakers alarmed before their trip: 2/2; >= 30 min before: 2/2 (100%)" in out, out
    assert re.search(r"false alarms: 0 on 17 healthy breakers", out), out
