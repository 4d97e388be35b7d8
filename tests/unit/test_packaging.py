"""setup.cfg lists packages explicitly (plugins/ installs as sinkframe_plugins); keep the list whole."""
from __future__ import annotations

import configparser
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_every_package_folder_is_listed_in_setup_cfg():
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    listed = set(config["options"]["packages"].split())
    on_disk = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "sinkframe").rglob("__init__.py")}
    on_disk.add("sinkframe_plugins")
    assert on_disk <= listed, f"add to setup.cfg [options] packages: {sorted(on_disk - listed)}"
