"""Where table specs come from: the project's files win, the plugins' fill in (sinkframe.schema.sources)."""
from __future__ import annotations

from pathlib import Path

import pytest

from sinkframe.errors import ConfigError
from sinkframe.mapping.registry import PluginRegistry
from sinkframe.schema.sources import load_specs
from sinkframe.schema.spec import load_schema

REPO = Path(__file__).resolve().parents[2]
TABLE = "tables:\n  {name}:\n    columns:\n      - {{name: id, type: {type}}}\n"


def spec_file(folder: Path, name: str, table: str, type_: str = "integer") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(TABLE.format(name=table, type=type_))
    return path


def test_the_builtin_plugins_bring_every_table_of_the_repositorys_schema_folder(tmp_path):
    from_plugins = load_specs([], PluginRegistry(), env={})
    from_repo = load_schema(REPO / "schema", env={})
    assert from_plugins.tables == from_repo.tables
    assert from_plugins.continuous_aggregates == from_repo.continuous_aggregates
    assert from_plugins.shipped_by["smart_breaker_data"] == "plugin smart_breaker"


def test_two_plugins_shipping_different_specs_of_one_table_is_an_error_the_project_can_settle(tmp_path):
    first = spec_file(tmp_path / "a", "t.yaml", "readings")
    second = spec_file(tmp_path / "b", "t.yaml", "readings", "bigint")
    shipped = {first: "plugin a", second: "plugin b"}
    with pytest.raises(ConfigError) as err:
        load_schema([], env={}, shipped=shipped)
    assert err.value.problems == [f"{second}:2::$.tables.readings: 'readings' is already declared at {first}:2 "
                                  "(shipped with plugin a); declare it in the project's schema folder to choose one"]
    project = spec_file(tmp_path / "project", "t.yaml", "readings", "text")
    spec = load_schema([project], env={}, shipped=shipped)
    assert spec.tables["readings"].columns[0].type == "text" and spec.origin("readings") == f"{project}:2"


def test_a_shipped_spec_file_that_is_missing_names_its_plugin(tmp_path):
    with pytest.raises(ConfigError, match=r"nope.yaml: no such schema spec file \(shipped with plugin x\)"):
        load_schema([], env={}, shipped={tmp_path / "nope.yaml": "plugin x"})


def test_a_default_folder_that_is_absent_is_not_an_error_but_a_named_one_is(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert "iot_raw_data" in load_specs(["schema"], PluginRegistry(), env={}).tables
    with pytest.raises(ConfigError, match="elsewhere: no such schema spec file or folder"):
        load_specs(["elsewhere"], PluginRegistry(), env={})
