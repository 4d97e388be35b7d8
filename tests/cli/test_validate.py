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
    assert (f"{bad_plugin}:4::$.mapper.plugin: unknown mapper plugin 'smart_braker' (did you mean 'smart_breaker'?); "
            "known plugins: enriched, raw, smart_breaker") in out
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


# --- the connector's targets against the table specs -------------------------------------------

def copy_specs(tmp_path: Path, edit=None) -> Path:
    """schema/ copied to tmp_path/schema, smart_breaker.yaml passed through `edit(text)`."""
    folder = tmp_path / "schema"
    shutil.copytree(REPO / "schema", folder)
    if edit:
        path = folder / "smart_breaker.yaml"
        path.write_text(edit(path.read_text()))
    return folder


def line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def validate_breaker(runner, tmp_path: Path, specs: Path):
    connector = tmp_path / "smart_breaker.yaml"
    shutil.copy(REPO / "configs" / "smart_breaker.yaml", connector)
    return connector, runner.invoke(cli, ["validate", "--schema-dir", str(specs), str(connector)])


def test_a_column_the_spec_lacks_is_named_with_connector_table_and_spec(runner, tmp_path):
    specs = copy_specs(tmp_path, lambda text: text.replace(
        "      - {name: reactive_power, type: double precision}\n", ""))
    connector, result = validate_breaker(runner, tmp_path, specs)
    assert result.exit_code == 1, result.output
    spec_file = specs / "smart_breaker.yaml"
    assert (f"{connector}:{line_of(connector, 'measurements: smart_breaker_data')}::$.tables.measurements: "
            f"plugin 'smart_breaker' fills column 'reactive_power' of table 'smart_breaker_data', which its spec "
            f"({spec_file}:{line_of(spec_file, 'smart_breaker_data:')}) does not have") in result.output
    assert "1 error(s) in 1 of 1 file(s)" in result.output


def test_a_type_that_differs_is_named_with_both_types_and_the_spec_line(runner, tmp_path):
    specs = copy_specs(tmp_path, lambda text: text.replace("{name: trip_count, type: integer}",
                                                           "{name: trip_count, type: text}"))
    connector, result = validate_breaker(runner, tmp_path, specs)
    assert result.exit_code == 1, result.output
    spec_file = specs / "smart_breaker.yaml"
    assert (f"{connector}:{line_of(connector, 'measurements: smart_breaker_data')}::$.tables.measurements: "
            "plugin 'smart_breaker' writes column 'trip_count' of table 'smart_breaker_data' as integer, but "
            f"{spec_file}:{line_of(spec_file, 'trip_count')} declares it text") in result.output


def test_a_not_null_column_without_default_the_mapper_never_fills(runner, tmp_path):
    specs = copy_specs(tmp_path, lambda text: text.replace(
        "      - {name: ingested_at,", "      - {name: site_id, type: text, nullable: false}\n"
                                      "      - {name: ingested_at,"))
    connector, result = validate_breaker(runner, tmp_path, specs)
    assert result.exit_code == 1, result.output
    spec_file = specs / "smart_breaker.yaml"
    assert (f"{connector}:{line_of(connector, 'measurements: smart_breaker_data')}::$.tables.measurements: "
            "column 'site_id' of table 'smart_breaker_data' is NOT NULL without a default "
            f"({spec_file}:{line_of(spec_file, 'site_id')}), and plugin 'smart_breaker' does not fill it")\
        in result.output


def test_type_spellings_are_normalised(runner, tmp_path):
    specs = copy_specs(tmp_path, lambda text: text.replace("{name: trip_count, type: integer}",
                                                           "{name: trip_count, type: int4}")
                       .replace("{name: time, type: timestamptz,", "{name: time, type: timestamp with time zone,")
                       .replace("{name: temperature, type: double precision}", "{name: temperature, type: float8}")
                       .replace("{name: breaker_status, type: text}", "{name: breaker_status, type: TEXT}"))
    _, result = validate_breaker(runner, tmp_path, specs)
    assert result.exit_code == 0, result.output


def test_an_upsert_key_without_a_unique_constraint(runner, tmp_path):
    specs = copy_specs(tmp_path)
    path = specs / "device_metadata.yaml"
    path.write_text(path.read_text().replace("    primary_key: [device_id]\n", ""))
    connector, result = validate_breaker(runner, tmp_path, specs)
    assert result.exit_code == 1, result.output
    assert (f"{connector}:{line_of(connector, 'device_metadata: device_metadata')}::$.tables.device_metadata: "
            "plugin 'smart_breaker' upserts into table 'device_metadata' on (device_id), but its spec "
            f"({path}:{line_of(path, '  device_metadata:')}) has no primary key or unique constraint") \
        in result.output


def test_a_plugins_default_table_is_pointed_at_the_plugin_key(runner, tmp_path):
    specs = copy_specs(tmp_path, lambda text: text.replace("{name: trip_count, type: integer}",
                                                           "{name: trip_count, type: bigint}"))
    path = write(tmp_path, "c.yaml", "name: c\ntopic: t\nmapper:\n  plugin: smart_breaker\n")
    result = runner.invoke(cli, ["validate", "--schema-dir", str(specs), str(path)])
    assert result.exit_code == 1
    assert f"{path}:4::$.mapper.plugin: plugin 'smart_breaker' writes column 'trip_count'" in result.output


def test_plugin_config_gets_the_same_did_you_mean_as_connector_config(runner, tmp_path):
    path = write(tmp_path, "c.yaml", "name: c\ntopic: t\nmapper:\n  plugin: smart_breaker\n  config:\n"
                                     "    update_device_metdata: false\n")
    result = runner.invoke(cli, ["validate", str(path)])
    assert result.exit_code == 1
    assert (f"{path}:6::$.mapper.config.update_device_metdata: unknown key 'update_device_metdata' "
            "(did you mean 'update_device_metadata'?); allowed keys: strict_device_type, update_device_metadata"
            ) in result.output


def test_the_example_plugin_validates_against_its_spec(runner):
    result = runner.invoke(cli, ["validate", "--plugins-dir", str(REPO / "examples" / "plugins"),
                                 "--schema-dir", str(REPO / "schema"), "--schema-dir", str(REPO / "examples" / "schema"),
                                 str(REPO / "examples" / "plugins" / "env_sensor.yaml")])
    assert result.exit_code == 0, result.output
    assert "-> env_sensor -> env_sensor_data" in result.output


# --- every layer in one run ---------------------------------------------------------------------

FOUR_MISTAKES = """\
name: breaker
topic: iot.smart_breaker.enriched
mapper:
  plugin: smart_braker
  config:
    update_device_metadta: true
batch:
  max_rows: -5
alerts:
  - name: overheat
    when: temprature > 70
"""
GUESSED = " [checked against plugin 'smart_breaker', the plugin you probably meant]"


def test_four_independent_mistakes_are_all_reported_in_one_run(runner, tmp_path):
    path = write(tmp_path, "c.yaml", FOUR_MISTAKES)
    result = runner.invoke(cli, ["validate", str(path)])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert f"{path}:8::$.batch.max_rows: -5 is less than the minimum of 1" in lines
    assert (f"{path}:4::$.mapper.plugin: unknown mapper plugin 'smart_braker' (did you mean 'smart_breaker'?); "
            "known plugins: enriched, raw, smart_breaker") in lines
    assert (f"{path}:6::$.mapper.config.update_device_metadta: unknown key 'update_device_metadta' "
            "(did you mean 'update_device_metadata'?); allowed keys: strict_device_type, update_device_metadata"
            + GUESSED) in lines
    alert = next(line for line in lines if line.startswith(f"{path}:11::$.alerts[0].when: "))
    assert "unknown column 'temprature' (did you mean 'temperature'?)" in alert and alert.endswith(GUESSED)
    assert "4 error(s) in 1 of 1 file(s)" in result.output


def test_four_mistakes_as_json(runner, tmp_path):
    path = write(tmp_path, "c.yaml", FOUR_MISTAKES)
    report = json.loads(runner.invoke(cli, ["validate", "-o", "json", str(path)]).output)
    [only] = report["files"]
    assert [e.split("::")[1].split(":")[0] for e in only["errors"]] == [
        "$.batch.max_rows", "$.mapper.plugin", "$.mapper.config.update_device_metadta", "$.alerts[0].when"]
    assert only["notes"] == [] and report["valid"] is False


def test_an_unknown_plugin_nothing_resembles_says_once_what_it_could_not_check(runner, tmp_path):
    path = write(tmp_path, "c.yaml", "name: c\ntopic: t\nmapper:\n  plugin: zigbee_thing\n  config:\n"
                                     "    whatever: 1\nalerts:\n  - {name: a, when: nope > 1}\n")
    result = runner.invoke(cli, ["validate", str(path)])
    assert result.exit_code == 1
    assert f"{path}:4::$.mapper.plugin: unknown mapper plugin 'zigbee_thing'; known plugins:" in result.output
    not_checked = [line for line in result.output.splitlines() if ": not checked: " in line]
    assert not_checked == [f"{path}:4::$.mapper.plugin: not checked: the plugin's config, the table roles, the "
                           "alert rules and the tables, for want of a known plugin 'zigbee_thing'"]
    assert "whatever" not in result.output and "nope" not in result.output
    assert "1 error(s) in 1 of 1 file(s) (and checks that could not run" in result.output


def test_a_schema_error_in_one_key_leaves_the_others_checked(runner, tmp_path):
    path = write(tmp_path, "c.yaml", "name: c\ntopic: t\nmapper:\n  plugin: raw\nbatch:\n  max_wait_ms: soon\n"
                                     "tables:\n  raw: iot_raw_data\n  rows: x\n")
    result = runner.invoke(cli, ["validate", str(path)])
    assert f"{path}:6::$.batch.max_wait_ms: 'soon' is not of type 'integer'" in result.output
    assert f"{path}:9::$.tables.rows: plugin 'raw' has no table role 'rows'; its roles are: raw" in result.output
    assert "2 error(s)" in result.output


def test_a_missing_plugin_name_says_what_was_not_checked(runner, tmp_path):
    path = write(tmp_path, "c.yaml", "name: c\ntopic: t\nmapper:\n  config: {}\nalerts: [1]\n")
    result = runner.invoke(cli, ["validate", str(path)])
    assert f"{path}:3::$.mapper: 'plugin' is a required property" in result.output
    assert f"{path}:5::$.alerts[0]: 1 is not of type 'object'" in result.output
    assert (f"{path}:3::$.mapper: not checked: the plugin's config, the table roles, the alert rules and the "
            "tables, for want of a valid mapper.plugin") in result.output


def test_without_a_schema_folder_the_plugins_own_specs_are_used(runner, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./schema here
    monkeypatch.delenv("SINKFRAME_SCHEMA_DIR", raising=False)
    shutil.copy(REPO / "configs" / "smart_breaker.yaml", tmp_path / "smart_breaker.yaml")
    result = runner.invoke(cli, ["validate", "smart_breaker.yaml"])
    assert result.exit_code == 0, result.output
    assert "-> smart_breaker -> device_metadata, smart_breaker_data" in result.output


def test_a_schema_folder_named_but_missing_is_an_error(runner, tmp_path):
    missing = tmp_path / "nope"
    result = runner.invoke(cli, ["validate", "--schema-dir", str(missing), str(REPO / "configs" / "raw.yaml")])
    assert result.exit_code == 1
    assert f"cannot check target tables: {missing}: no such schema spec file or folder" in result.output


def test_a_variable_that_is_not_set_leaves_the_other_layers_checked(runner, tmp_path, monkeypatch):
    monkeypatch.delenv("NO_SUCH_ROWS", raising=False)
    path = write(tmp_path, "c.yaml", "name: c\ntopic: t\nmapper:\n  plugin: raw\n  config: {x: 1}\nbatch:\n"
                                     "  max_rows: ${NO_SUCH_ROWS}\n")
    result = runner.invoke(cli, ["validate", str(path)])
    assert result.exit_code == 1
    assert f"{path}:7::$.batch.max_rows: environment variable ${{NO_SUCH_ROWS}} is not set" in result.output
    assert f"{path}:5::$.mapper.config.x: unknown key 'x'" in result.output
    assert "is not of type" not in result.output  # the unresolved text is not a second problem
    assert "2 error(s) in 1 of 1 file(s)" in result.output
