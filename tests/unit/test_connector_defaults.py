"""Connector defaults exist once, in CONNECTOR_SCHEMA; loading a file fills them from there."""
from __future__ import annotations

from pathlib import Path

from sinkframe.config.connector import CONNECTOR_SCHEMA, load_connector, with_defaults


def schema_default(*keys: str):
    node = CONNECTOR_SCHEMA
    for key in keys:
        node = node["properties"][key]
    return node["default"]


def test_a_minimal_file_gets_every_default_from_the_schema(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text("name: c\ntopic: t\nmapper:\n  plugin: raw\n")
    connector = load_connector(path, env={})
    assert connector.max_rows == schema_default("batch", "max_rows")
    assert connector.max_wait_ms == schema_default("batch", "max_wait_ms")
    assert connector.tolerance == schema_default("errors", "tolerance")
    assert connector.dead_letter_table == schema_default("errors", "dead_letter", "table")
    assert connector.dead_letter_topic is schema_default("errors", "dead_letter", "topic") is None
    assert connector.enabled is schema_default("enabled") is True
    assert (connector.plugin_config, connector.tables, connector.consumer_properties) == ({}, {}, {})
    assert connector.group_id == "sinkframe-c"


def test_given_values_win_and_the_input_is_not_changed():
    data = {"batch": {"max_rows": 7}, "errors": {"dead_letter": {"table": None}}}
    filled = with_defaults(CONNECTOR_SCHEMA, data)
    assert filled["batch"] == {"max_rows": 7, "max_wait_ms": schema_default("batch", "max_wait_ms")}
    assert filled["errors"]["dead_letter"] == {"table": None, "topic": None}
    assert data == {"batch": {"max_rows": 7}, "errors": {"dead_letter": {"table": None}}}
