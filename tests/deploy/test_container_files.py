"""No Docker engine runs here, so check what can be checked of the image and compose files."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
SEED_VARIABLES = {"REDPANDA_BROKERS", "RAW_TOPIC", "ENRICHED_TOPIC", "SMART_BREAKER_TOPIC", "TIMESCALEDB_HOST",
                  "TIMESCALEDB_PORT", "TIMESCALEDB_DB", "TIMESCALEDB_USER", "TIMESCALEDB_PASSWORD"}


def test_dockerfile_runs_as_non_root_and_ships_what_it_runs():
    text = (REPO / "Dockerfile").read_text()
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    # Files copied from the build context (not `COPY --from=stage`).
    copied = set(re.findall(r"^COPY\s+(?:--chown\S+\s+)?([^-\s]\S*)\s", text, re.M))
    for path in copied:
        assert (REPO / path).exists(), f"Dockerfile copies {path}, which does not exist"
    cmd = re.search(r"^CMD\s+(\[.*\])", text, re.M).group(1)
    for config in re.findall(r'"(configs/[^"]+)"', cmd):
        assert (REPO / config).is_file()
        assert "configs" in copied


def test_compose_matches_the_seed_workflow_and_variables():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"timescaledb", "redpanda", "redpanda-connector"} <= set(services)
    connector = services["redpanda-connector"]
    assert SEED_VARIABLES <= set(connector["environment"])
    assert connector["build"] == "."
    assert set(connector["depends_on"]) == {"timescaledb", "redpanda"}
