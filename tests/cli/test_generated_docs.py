"""Generated docs match their sources: docs/tables.md (specs, connectors, plugins) and README's settings."""
from __future__ import annotations

import shutil
from pathlib import Path

from click.testing import CliRunner

from sinkframe.cli import cli
from sinkframe.cli.main import generated_docs
from sinkframe.config.settings import SETTINGS

REPO = Path(__file__).resolve().parents[2]


def test_docs_tables_md_is_generated_from_the_specs():
    expected = generated_docs(REPO)[REPO / "docs" / "tables.md"]
    assert (REPO / "docs" / "tables.md").read_text() == expected, \
        "docs/tables.md is stale: run `sinkframe docs` and commit the result"


def test_readme_settings_table_is_generated_from_the_declaration():
    expected = generated_docs(REPO)[REPO / "README.md"]
    assert (REPO / "README.md").read_text() == expected, \
        "README.md's settings table is stale: run `sinkframe docs` and commit the result"
    readme = expected
    for setting in SETTINGS:
        assert f"| `{setting.env}` |" in readme
    assert "`SINKFRAME_DB_PREPARE_THRESHOLD`" in readme and "| `RAW_TOPIC` | `topic` in configs/raw.yaml |" in readme


def test_docs_command_rewrites_what_is_stale_and_check_reports_it(tmp_path):
    root = tmp_path / "checkout"
    for folder in ("configs", "schema", "docs"):
        shutil.copytree(REPO / folder, root / folder)
    shutil.copy(REPO / "README.md", root / "README.md")
    spec = root / "schema" / "smart_breaker.yaml"
    spec.write_text(spec.read_text().replace("{name: trip_count, type: integer}",
                                             "{name: trip_count, type: integer, description: trips so far}"))
    runner = CliRunner()
    stale = runner.invoke(cli, ["docs", "--root", str(root), "--check"])
    assert stale.exit_code == 1 and f"stale: {root / 'docs' / 'tables.md'}" in stale.output
    assert "README.md" not in stale.output
    written = runner.invoke(cli, ["docs", "--root", str(root)])
    assert written.exit_code == 0, written.output
    assert "| trip_count | integer | null |  | `smart_breaker` | trips so far |" in \
        (root / "docs" / "tables.md").read_text()
    assert runner.invoke(cli, ["docs", "--root", str(root), "--check"]).exit_code == 0
