"""Connector files: one topic paired with one mapper plugin, and how to batch and fail.

The JSON Schema below is the single source of truth for what a connector file may
contain: it drives validation, `sinkframe validate`, and its defaults are the only
ones (`with_defaults` fills them in; nothing here repeats them). A plugin's own
config goes through the same `schema_problems`, so it gets the same messages.
"""
from __future__ import annotations

import copy
import difflib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import jsonschema

from sinkframe.config.yamlfile import YamlDocument, load_yaml
from sinkframe.errors import ConfigError

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
IDENTIFIER_PATTERN = r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$"
TOPIC_PATTERN = r"^[A-Za-z0-9._-]{1,249}$"
# Keys whose values are never echoed in a problem (`sasl.password`, `ssl.key.password`...).
SECRET_KEY_PATTERN = re.compile(r"password|secret|token|credential|sasl\.jaas|private", re.IGNORECASE)

CONNECTOR_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "sinkframe connector",
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "topic", "mapper"],
    "properties": {
        "name": {"type": "string", "pattern": NAME_PATTERN,
                 "description": "Unique connector name; also the default consumer group suffix."},
        "topic": {"type": "string", "minLength": 1, "description": "Kafka topic to consume."},
        "enabled": {"type": "boolean", "default": True},
        "mapper": {
            "type": "object", "additionalProperties": False, "required": ["plugin"],
            "properties": {
                "plugin": {"type": "string", "minLength": 1, "description": "Mapper plugin name."},
                "config": {"type": "object", "default": {},
                           "description": "Validated by the plugin's own schema."},
            },
        },
        "tables": {
            "type": "object", "default": {}, "description": "Mapper role -> table name (default: the plugin's).",
            "additionalProperties": {"type": "string", "pattern": IDENTIFIER_PATTERN},
        },
        "batch": {
            "type": "object", "additionalProperties": False,
            "properties": {
                "max_rows": {"type": "integer", "minimum": 1, "maximum": 1_000_000, "default": 20_000,
                             "description": "Write a batch once this many messages are buffered."},
                "max_wait_ms": {"type": "integer", "minimum": 1, "maximum": 600_000, "default": 100,
                                "description": "Write a batch at the latest this long after its first message."},
            },
        },
        "errors": {
            "type": "object", "additionalProperties": False,
            "properties": {
                "tolerance": {"enum": ["none", "all"], "default": "none",
                              "description": "none: stop on a bad record; all: dead-letter it and go on."},
                "dead_letter": {
                    "type": "object", "additionalProperties": False,
                    "properties": {
                        "table": {"type": ["string", "null"], "pattern": IDENTIFIER_PATTERN,
                                  "default": "sinkframe_dead_letters"},
                        "topic": {"type": ["string", "null"], "pattern": TOPIC_PATTERN, "default": None,
                                  "description": "Kafka topic for dead letters: original key and value, "
                                                 "the reason in headers (at-least-once)."},
                    },
                },
            },
        },
        "validation": {
            "type": "object", "additionalProperties": False,
            "description": "Optional JSON Schema every message must match (stage validate); "
                           "give `schema` inline or `schema_file` (JSON or YAML, relative to this file).",
            "properties": {
                "schema": {"type": "object"},
                "schema_file": {"type": "string", "minLength": 1},
            },
        },
        "tenant": {
            "type": "object", "additionalProperties": False,
            "description": "Route each message's rows to its tenant's schema (sinkframe tenants add): name the "
                           "tenant by a message field, or by the key's prefix before a separator.",
            "properties": {
                "field": {"type": "string", "minLength": 1, "description": "Message field naming the tenant."},
                "key_prefix": {"type": "string", "minLength": 1, "maxLength": 8,
                               "description": "Separator: the key's text before it names the tenant."},
            },
        },
        "alerts": {
            "type": "array", "default": [],
            "description": "Threshold alert rules on the rows this connector writes; each rule's keys are "
                           "checked against the mapper's columns (sinkframe.alerts.rules).",
            "items": {"type": "object"},
        },
        "alerts_topic": {
            "type": ["string", "null"], "pattern": TOPIC_PATTERN, "default": None,
            "description": "Kafka topic for alert transitions: JSON keyed by rule and key (at-least-once).",
        },
        "consumer": {
            "type": "object", "additionalProperties": False,
            "properties": {
                "group_id": {"type": "string", "minLength": 1,
                             "description": "Consumer group (default: sinkframe-<name>)."},
                "properties": {"type": "object", "default": {},
                               "description": "librdkafka properties for this connector.",
                               "additionalProperties": {"type": ["string", "number", "boolean"]}},
                "stored_offset_past_log_end": {
                    "enum": ["stop", "earliest"], "default": "stop",
                    "description": "When the database holds an offset beyond a partition's log end (topic "
                                   "re-created or truncated): stop that partition with an error, or read it "
                                   "again from its earliest offset (logged and counted)."},
            },
        },
    },
}


@dataclass(frozen=True)
class ConnectorConfig:
    name: str
    topic: str
    plugin: str
    plugin_config: Mapping[str, Any]
    tables: Mapping[str, str]
    max_rows: int
    max_wait_ms: int
    tolerance: str
    dead_letter_table: str | None
    dead_letter_topic: str | None
    group_id: str
    consumer_properties: Mapping[str, str]
    enabled: bool = True
    message_schema: Mapping[str, Any] | None = None  # validation: the JSON Schema messages must match
    tenant: Mapping[str, str] | None = None  # {field: name} or {key_prefix: separator}
    alerts: tuple = ()  # the `alerts:` rules as written; parsed against the mapper's targets
    alerts_topic: str | None = None
    stored_offset_past_log_end: str = "stop"  # stop | earliest (pipeline/logend.py)
    source: YamlDocument | None = field(default=None, compare=False, repr=False)

    @property
    def path(self) -> Path | None:
        return self.source.path if self.source else None

    @property
    def doc(self) -> YamlDocument:
        """The file it came from, for problems (a stand-in naming it when it was built in code)."""
        return self.source or YamlDocument(Path(f"<connector {self.name}>"), None)


def schema_problems(doc: YamlDocument, schema: Mapping[str, Any], data: Any, prefix: tuple = ()) -> list[str]:
    """Every JSON Schema violation as `file:line::$.path: message`, in file order."""
    validator = jsonschema.Draft202012Validator(schema)
    problems = []
    for error in sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path]):
        parts = prefix + tuple(error.absolute_path)
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            # Point at each unknown key itself: its line is where the typo is.
            allowed = sorted(error.schema.get("properties", {}))
            for key in sorted(set(error.instance) - set(allowed)):
                problems.append(doc.problem(parts + (key,), _unknown_key(key, allowed)))
        else:
            problems.append(doc.problem(parts, _message(error)))
    return problems


def _message(error: jsonschema.ValidationError) -> str:
    if any(SECRET_KEY_PATTERN.search(str(part)) for part in error.absolute_path):
        # jsonschema's message quotes the value; a secret must not appear in `validate` output.
        return f"invalid value (not shown): expected {error.validator} {error.validator_value!r}"
    return error.message


def _unknown_key(key: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    listing = f"; allowed keys: {', '.join(allowed)}" if allowed else ""
    return f"unknown key {key!r}{hint}{listing}"


def with_defaults(schema: Mapping[str, Any], data: Any) -> Any:
    """A copy of `data` with the defaults of `schema` filled in, as deep as they go.

    An absent object whose properties have defaults is created, so that
    `with_defaults(CONNECTOR_SCHEMA, {...})["batch"]["max_rows"]` always exists.
    """
    if not isinstance(data, dict):
        return data
    filled = dict(data)
    for key, sub in schema.get("properties", {}).items():
        if key in filled:
            filled[key] = with_defaults(sub, filled[key])
        elif "default" in sub:
            filled[key] = copy.deepcopy(sub["default"])
        elif _has_defaults(sub):
            filled[key] = with_defaults(sub, {})
    return filled


def _has_defaults(schema: Mapping[str, Any]) -> bool:
    return any("default" in sub or _has_defaults(sub) for sub in schema.get("properties", {}).values())


def load_connector(path: Path, env: Mapping[str, str] | None = None) -> ConnectorConfig:
    """Load one connector file. Raises ConfigError with every structural problem."""
    doc = load_yaml(Path(path), os.environ if env is None else env)
    if not isinstance(doc.data, dict):
        raise ConfigError(f"{path}: expected a mapping of connector settings")
    problems = schema_problems(doc, CONNECTOR_SCHEMA, doc.data)
    if problems:
        raise ConfigError(problems[0], problems)
    data = with_defaults(CONNECTOR_SCHEMA, doc.data)
    batch, errors, consumer = data["batch"], data["errors"], data["consumer"]
    problems = _error_policy_problems(doc, data)
    message_schema = _message_schema(doc, data.get("validation"), problems)
    if problems:
        raise ConfigError(problems[0], problems)
    return ConnectorConfig(
        name=data["name"],
        topic=data["topic"],
        plugin=data["mapper"]["plugin"],
        plugin_config=data["mapper"]["config"],
        tables=data["tables"],
        max_rows=batch["max_rows"],
        max_wait_ms=batch["max_wait_ms"],
        tolerance=errors["tolerance"],
        dead_letter_table=errors["dead_letter"]["table"],
        dead_letter_topic=errors["dead_letter"]["topic"],
        group_id=consumer.get("group_id") or f"sinkframe-{data['name']}",
        consumer_properties={k: str(v).lower() if isinstance(v, bool) else str(v)
                             for k, v in consumer["properties"].items()},
        enabled=data["enabled"],
        message_schema=message_schema,
        tenant=data.get("tenant"),
        alerts=tuple(data["alerts"]),
        alerts_topic=data["alerts_topic"],
        stored_offset_past_log_end=consumer["stored_offset_past_log_end"],
        source=doc,
    )


def _error_policy_problems(doc: YamlDocument, data: Mapping[str, Any]) -> list[str]:
    """Rules across keys that JSON Schema cannot say; `data` has its defaults filled in."""
    errors = data["errors"]
    dead_letter = errors["dead_letter"]
    problems = []
    if errors["tolerance"] == "all" and dead_letter["table"] is None and not dead_letter["topic"]:
        problems.append(doc.problem(("errors", "dead_letter"), "errors.tolerance is all but no dead-letter "
                                    "destination is set (table and topic are both null): bad records would be lost"))
    tenant = data.get("tenant")
    if tenant is not None and len(tenant) != 1:
        problems.append(doc.problem(("tenant",), "give exactly one of `field` (a message field naming the "
                                    "tenant) and `key_prefix` (the separator after the tenant in the key)"))
    if data["alerts_topic"] is not None and data["alerts_topic"] == data["topic"]:
        problems.append(doc.problem(("alerts_topic",), "the alerts topic must not be the topic the connector "
                                    "consumes"))
    if dead_letter["topic"] == data["topic"]:
        problems.append(doc.problem(("errors", "dead_letter", "topic"), "the dead-letter topic must not be the "
                                    "topic the connector consumes"))
    return problems


def _message_schema(doc: YamlDocument, validation: Mapping[str, Any] | None, problems: list[str]):
    """The message JSON Schema of `validation`, checked; None when there is none."""
    if not validation:
        return None
    from sinkframe.pipeline.validation import schema_validator

    if ("schema" in validation) == ("schema_file" in validation):
        problems.append(doc.problem(("validation",), "give exactly one of `schema` and `schema_file`"))
        return None
    key = "schema" if "schema" in validation else "schema_file"
    schema = validation.get("schema")
    if schema is None:
        path = Path(validation["schema_file"])
        path = path if path.is_absolute() else doc.path.parent / path
        try:
            text = path.read_text(encoding="utf-8")
            schema = json.loads(text) if path.suffix == ".json" else load_yaml(path, {}).data
        except (OSError, ValueError, ConfigError) as err:
            problems.append(doc.problem(("validation", key), f"cannot read message schema {path}: {err}"))
            return None
        if not isinstance(schema, dict):
            problems.append(doc.problem(("validation", key), f"{path}: a JSON Schema must be an object"))
            return None
    try:
        schema_validator(schema)
    except jsonschema.SchemaError as err:
        where = "".join(f"/{p}" for p in err.absolute_path) or "/"
        problems.append(doc.problem(("validation", key), f"not a valid JSON Schema at {where}: {err.message}"))
        return None
    return schema
