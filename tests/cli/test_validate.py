"""`sinkframe validate` and `sinkframe plugins` through click's CliRunner, files in tmp_path."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from sinkframe.cli import cli
from sinkframe.config.connector import CONNECTOR_SCHEMA

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def runner(monkeypatch):
    monkeypatch.chdir(REPO)  # the default schema folder is ./schema
    return CliRunner()


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_shipped_configs_are_valid(runner):
    result = runner.invoke(cli, ["validate", *map(str, sorted((REPO / "configs").glob("*.yaml")))])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("ok")]
    assert len(lines) == 3
    assert any("iot.smart_breaker.enriched -> smart_breaker -> device_metadata, smart_breaker_data" in l for l in lines)


def test_misspelled_key_is_pinpointed_with_file_line_and_path(runner, tmp_path):
    path = write(tmp_path, "c.yaml", "name: c\ntopic: t\nmapper:\n  plugin: raw\nbatch:\n  max_row: 10\n")
    result = runner.invoke(cli, ["validate", str(path)])
    assert result.exit_code == 1
    assert f"{path}:6::$.batch.max_row: unknown key 'max_row' (did you mean 'max_rows'?)" in result.output


def test_every_error_in_every_file_is_reported(runner, tmp_path, monkeypatch):
    monkeypatch.delenv("NO_SUCH_VAR", raising=False)
    bad_env = write(tmp_path, "a.yaml", "name: a\ntopic: ${NO_SUCH_VAR}\nmapper:\n  plugin: raw\n")
    bad_plugin = write(tmp_path, "b.yaml", "name: b\ntopic: t\nmapper:\n  plugin: smart_braker\n")
    bad_types = write(tmp_path, "c.yaml", "name: c\ntopic: t\nmapper:\n  plugin: raw\nbatch:\n  max_rows: lots\n"
                                          "errors:\n  tolerance: some\n")
    bad_yaml = write(tmp_path, "d.yaml", "name: d\ntopic: [t\n")
    bad_cfg = write(tmp_path, "e.yaml", "name: e\ntopic: t\nmapper:\n  plugin: enriched\n  config:\n"
                                        "    update_device_metadata: maybe\n")
    result = runner.invoke(cli, ["validate", *map(str, [bad_env, bad_plugin, bad_types, bad_yaml, bad_cfg])])
    assert result.exit_code == 1
    out = result.output
    assert f"{bad_env}:2::$.topic: environment variable ${{NO_SUCH_VAR}} is not set" in out
    assert f"{bad_plugin}:4::$.mapper.plugin: unknown mapper plugin 'smart_braker'; known plugins: enriched, raw, smart_breaker" in out
    assert f"{bad_types}:6::$.batch.max_rows: 'lots' is not of type 'integer'" in out
    assert f"{bad_types}:8::$.errors.tolerance: 'some' is not one of ['none', 'all']" in out
    assert f"{bad_yaml}:3:1: invalid YAML" in out
    assert f"{bad_cfg}:6::$.mapper.config.update_device_metadata: 'maybe' is not of type 'boolean'" in out
    assert "6 error(s) in 5 of 5 file(s)" in out


def test_unknown_table_role_and_undeclared_table(runner, tmp_path):
    role = write(tmp_path, "r.yaml", "name: r\ntopic: t\nmapper:\n  plugin: raw\ntables:\n  rows: x\n")
    table = write(tmp_path, "s.yaml", "name: s\ntopic: t\nmapper:\n  plugin: raw\ntables:\n  raw: not_declared\n")
    result = runner.invoke(cli, ["validate", str(role), str(table)])
    assert result.exit_code == 1
    assert "plugin 'raw' has no table role 'rows'; its roles are: raw" in result.output
    assert f"{table}:6::$.tables.raw: table 'not_declared' (role 'raw') is declared in no schema spec" in result.output


def test_json_output_for_machines(runner, tmp_path):
    good = REPO / "configs" / "raw.yaml"
    bad = write(tmp_path, "x.yaml", "name: x\ntopic: t\nmapper: {plugin: raw}\nbogus: 1\n")
    result = runner.invoke(cli, ["validate", "-o", "json", str(good), str(bad)])
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["valid"] is False
    by_path = {f["path"]: f for f in report["files"]}
    assert by_path[str(good)]["errors"] == [] and by_path[str(good)]["summary"].startswith("raw:")
    allowed = ", ".join(sorted(CONNECTOR_SCHEMA["properties"]))
    assert by_path[str(bad)]["errors"] == [f"{bad}:4::$.bogus: unknown key 'bogus'; allowed keys: {allowed}"]


def test_env_interpolation_types_values(runner, tmp_path, monkeypatch):
    monkeypatch.setenv("ROWS", "123")
    path = write(tmp_path, "c.yaml", "name: c\ntopic: ${TOPIC_X:-iot.raw}\nmapper:\n  plugin: raw\n"
                                     "batch:\n  max_rows: ${ROWS}\n")
    result = runner.invoke(cli, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert "c: iot.raw -> raw -> iot_raw_data (batch 123 rows" in result.output


def test_plugins_lists_builtins_and_plugins_dir(runner):
    result = runner.invoke(cli, ["plugins", "--plugins-dir", str(REPO / "examples" / "plugins")])
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.output.splitlines() if line.strip()}
    assert "built-in" in lines["smart_breaker"]
    assert str(REPO / "examples" / "plugins" / "env_sensor.py") in lines["env_sensor"]


def test_broken_plugin_is_named(runner, tmp_path):
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "broken.py").write_text("import no_such_module_xyz\n")
    shutil.copy(REPO / "examples" / "plugins" / "env_sensor.py", folder / "env_sensor.py")
    path = write(tmp_path, "c.yaml", "name: c\ntopic: t\nmapper:\n  plugin: broken\n")
    result = runner.invoke(cli, ["validate", "--plugins-dir", str(folder), str(path)])
    assert result.exit_code == 1
    assert "unknown mapper plugin 'broken'; known plugins: enriched, env_sensor, raw, smart_breaker" in result.output
    assert "broken.py: import failed: ModuleNotFoundError" in result.output
