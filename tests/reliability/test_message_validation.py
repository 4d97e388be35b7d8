"""Stage `validate`: a per-connector JSON Schema for messages, checked before mapping."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from sinkframe.cli import cli
from sinkframe.config.connector import load_connector
from sinkframe.errors import ConfigError, RecordError
from sinkframe.mapping.validation import MessageValidator

from sinktest.config import sink_env, write_connector
from sinktest.db import create_tables, dead_letters, query
from sinktest.paths import REPO
from sinktest.sinks import run_until_written

SCHEMA_YAML = """\
validation:
  schema:
    type: object
    required: [device_id, payload]
    properties:
      device_id: {type: string, pattern: "^[a-z]+-[0-9]+$"}
      payload:
        type: object
        required: [temperature]
        properties:
          temperature: {type: number, minimum: -50, maximum: 150}
"""


def test_validator_names_every_violation_by_json_path():
    validator = MessageValidator({"type": "object", "required": ["a"],
                                  "properties": {"a": {"type": "integer"}, "b": {"type": "array",
                                                 "items": {"type": "string"}}}})
    validator.validate({"a": 1, "b": ["x"]})
    with pytest.raises(RecordError) as err:
        validator.validate({"a": "1", "b": ["x", 2]})
    assert err.value.stage == "validate"
    assert err.value.reason == "$.a: '1' is not of type 'integer'; $.b[1]: 2 is not of type 'string'"
    with pytest.raises(RecordError, match=r"^validate: \$: 'a' is a required property$"):
        validator.validate({})


def test_schema_inline_or_from_a_file_and_a_broken_schema_is_a_config_error(tmp_path):
    inline = write_connector(tmp_path, name="inline", topic="t", extra=SCHEMA_YAML)
    assert load_connector(inline).message_schema["required"] == ["device_id", "payload"]

    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "msg.json").write_text(json.dumps({"type": "object", "required": ["device_id"]}))
    from_file = write_connector(tmp_path, name="file", topic="t",
                                extra="validation:\n  schema_file: schemas/msg.json\n")
    assert load_connector(from_file).message_schema == {"type": "object", "required": ["device_id"]}

    broken = write_connector(tmp_path, name="broken", topic="t",
                             extra="validation:\n  schema:\n    type: objekt\n")
    missing = write_connector(tmp_path, name="missing", topic="t",
                              extra="validation:\n  schema_file: nowhere.json\n")
    result = CliRunner().invoke(cli, ["validate", "--schema-dir", str(REPO / "schema"), str(broken), str(missing)])
    assert result.exit_code == 1
    assert f"{broken}:11::$.validation.schema: not a valid JSON Schema at /type: 'objekt' is not valid" \
        in result.output
    assert f"{missing}:11::$.validation.schema_file: cannot read message schema" in result.output
    with pytest.raises(ConfigError):
        load_connector(broken)


def test_messages_breaking_the_schema_are_dead_lettered_at_stage_validate(
        kafka_bootstrap, pg_dsn, new_topic, tmp_path):
    topic = new_topic()
    create_tables(pg_dsn)
    from sinkframe.devservices import produce

    messages = [
        {"device_id": "sensor-1", "payload": {"temperature": 21.5}},
        {"device_id": "sensor-2", "payload": {"temperature": "hot"}},
        {"device_id": "Sensor 3", "payload": {"temperature": 20}},
        {"device_id": "sensor-4", "payload": {"temperature": 500}},
        {"device_id": "sensor-5"},
        {"device_id": "sensor-6", "payload": {"temperature": -3, "extra": True}},
    ]
    produce(kafka_bootstrap, topic, messages)
    connector = write_connector(tmp_path, name="validated", topic=topic, extra=SCHEMA_YAML)

    run_until_written([connector], sink_env(kafka_bootstrap, pg_dsn), messages=len(messages))

    assert sorted(r[0] for r in query(pg_dsn, "SELECT device_id FROM iot_raw_data")) == ["sensor-1", "sensor-6"]
    reasons = {r[2]: (r[3], r[4], r[5]) for r in dead_letters(pg_dsn)}
    assert reasons == {
        1: ("validate", "RecordError", "$.payload.temperature: 'hot' is not of type 'number'"),
        2: ("validate", "RecordError", "$.device_id: 'Sensor 3' does not match '^[a-z]+-[0-9]+$'"),
        3: ("validate", "RecordError", "$.payload.temperature: 500 is greater than the maximum of 150"),
        4: ("validate", "RecordError", "$: 'payload' is a required property"),
    }


def test_the_yaml_examples_of_docs_reliability_are_valid_connector_settings(tmp_path):
    import re

    text = (REPO / "docs" / "reliability.md").read_text()
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if b.startswith(("errors:", "validation:"))]
    assert len(blocks) == 2
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "smart_breaker.json").write_text("{}")
    for i, block in enumerate(blocks):
        path = tmp_path / f"example{i}.yaml"
        path.write_text(f"name: example{i}\ntopic: iot.raw\nmapper:\n  plugin: raw\n{block}")
        config = load_connector(path)
        assert config.tolerance == "all" or config.message_schema["required"] == ["device_id", "measurements"]
