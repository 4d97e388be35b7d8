"""One error reporter for every command: `error: ...` per problem, exit 2 for configuration, 1 otherwise."""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from sinkframe.cli import cli

REPO = Path(__file__).resolve().parents[2]
BAD_ENV = {"SINKFRAME_DB_POOL_SIZE": "0"}
MESSAGE = "error: SINKFRAME_DB_POOL_SIZE='0': expected a whole number >= 1"


@pytest.mark.parametrize("args", [
    ["export", "iot_raw_data"],
    ["status", str(REPO / "configs" / "raw.yaml")],
    ["run", str(REPO / "configs" / "raw.yaml")],
    ["simulate", "--count", "1"],
])
def test_a_bad_setting_exits_2_naming_it(args):
    result = CliRunner().invoke(cli, args, env=BAD_ENV)
    assert result.exit_code == 2, result.output
    assert MESSAGE in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("command", ["plan", "apply"])
def test_schema_commands_exit_1_because_2_means_changes(command):
    result = CliRunner().invoke(cli, ["schema", command, str(REPO / "schema")], env=BAD_ENV)
    assert result.exit_code == 1, result.output
    assert MESSAGE in result.stderr


def test_every_problem_of_a_config_error_is_listed(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: c\ntopic: t\nmapper:\n  plugin: raw\nbatch:\n  max_row: 1\nerrors:\n  tolerance: some\n")
    result = CliRunner().invoke(cli, ["run", str(path)])
    assert result.exit_code == 2, result.output
    assert f"error: {path}:6::$.batch.max_row: unknown key 'max_row' (did you mean 'max_rows'?)" in result.stderr
    assert f"error: {path}:8::$.errors.tolerance: 'some' is not one of ['none', 'all']" in result.stderr
