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
from typing import Any, Iterable, Mapping

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
        "models": {
            "type": "array", "default": [],
            "description": "Models scoring the rows this connector writes, each a column for alert rules; "
                           "columns checked against the mapper's (sinkframe.models.spec, docs/models.md).",
            "items": {
                "type": "object", "additionalProperties": False, "required": ["name", "features"],
                "properties": {
                    "name": {"type": "string", "pattern": r"^[a-z_][a-z0-9_]{0,62}$",
                             "description": "The model's name, and its score's column for alert rules."},
                    "features": {"type": "array", "minItems": 2, "items": {"type": "string", "minLength": 1},
                                 "description": "Numeric columns: the one explained first (temperature), "
                                                "then the loads that explain it (phase currents)."},
                    "key": {"type": "string", "minLength": 1,
                            "description": "The column a baseline and a smoothing are kept per (default "
                                           "device_id)."},
                    "table": {"type": "string", "minLength": 1,
                              "description": "The mapper role whose rows are scored (default: the first)."},
                },
            },
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
    models: tuple = ()  # the `models:` entries as written; parsed against the mapper's targets
    stored_offset_past_log_end: str = "stop"  # stop | earliest (pipeline/consume/logend.py)
    source: YamlDocument | None = field(default=None, compare=False, repr=False)

    @property
    def path(self) -> Path | None:
        return self.source.path if self.source else None

    @property
    def doc(self) -> YamlDocument:
        """The file it came from, for problems (a stand-in naming it when it was built in code)."""
        return self.source or YamlDocument(Path(f"<connector {self.name}>"), None)


@dataclass(frozen=True)
class Violation:
    """One JSON Schema violation: where its message points, and the values it makes unusable
    (for a missing required key, the missing keys rather than the object holding them)."""

    path: tuple
    message: str
    unusable: tuple[tuple, ...]


def schema_problems(doc: YamlDocument, schema: Mapping[str, Any], data: Any, prefix: tuple = ()) -> list[str]:
    """Every JSON Schema violation as `file:line::$.path: message`, in file order."""
    return [doc.problem(v.path, v.message) for v in schema_violations(schema, data, prefix)]


def schema_violations(schema: Mapping[str, Any], data: Any, prefix: tuple = ()) -> list[Violation]:
    validator = jsonschema.Draft202012Validator(schema)
    violations = []
    for error in sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path]):
        parts = prefix + tuple(error.absolute_path)
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            # Point at each unknown key itself: its line is where the typo is.
            allowed = sorted(error.schema.get("properties", {}))
            for key in sorted(set(error.instance) - set(allowed)):
                violations.append(Violation(parts + (key,), _unknown_key(key, allowed), (parts + (key,),)))
        elif error.validator == "required" and isinstance(error.instance, dict):
            missing = tuple(parts + (key,) for key in error.validator_value if key not in error.instance)
            violations.append(Violation(parts, _message(error), missing))
        else:
            violations.append(Violation(parts, _message(error), (parts,)))
    return violations


def _message(error: jsonschema.ValidationError) -> str:
    if any(SECRET_KEY_PATTERN.search(str(part)) for part in error.absolute_path):
        # jsonschema's message quotes the value; a secret must not appear in `validate` output.
        return f"invalid value (not shown): expected {error.validator} {error.validator_value!r}"
    return error.message


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """The choice `word` is probably a misspelling of, if one is close enough (config keys, plugin names)."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return close[0] if close else None


def _unknown_key(key: str, allowed: list[str]) -> str:
    close = did_you_mean(key, allowed)
    hint = f" (did you mean {close!r}?)" if close else ""
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


@dataclass(frozen=True)
class ConnectorCheck:
    """A connector file read as far as it goes, for `sinkframe validate`.

    Each value the JSON Schema refuses is set aside (its key path in `unusable`) and
    the connector's defaults take its place in `config`, so that the checks which do
    not depend on it (the plugin, its config, the alert rules, the tables) still run
    on the rest of the file. `config` is None only when the file is not a readable
    mapping at all.
    """

    problems: list[str]
    config: ConnectorConfig | None = None
    unusable: frozenset[tuple] = frozenset()

    def usable(self, *parts) -> bool:
        """Whether the value at key path `parts`, and everything in it, passed the JSON Schema."""
        return not any(bad[:len(parts)] == parts or parts[:len(bad)] == bad for bad in self.unusable)


def check_connector(path: Path, env: Mapping[str, str] | None = None) -> ConnectorCheck:
    """Every problem of one connector file, and as much of its config as is sound."""
    try:
        doc = load_yaml(Path(path), os.environ if env is None else env, keep_going=True)
    except ConfigError as err:
        return ConnectorCheck(err.problems)
    if not isinstance(doc.data, dict):
        return ConnectorCheck(doc.problems or [f"{path}: expected a mapping of connector settings"])
    # A value naming a variable that is not set is already a problem; its text says nothing more.
    violations = [v for v in schema_violations(CONNECTOR_SCHEMA, doc.data)
                  if not any(v.path[:len(parts)] == parts for parts in doc.unresolved)]
    problems = doc.problems + [doc.problem(v.path, v.message) for v in violations]
    unusable = frozenset(_whole_value(parts) for parts in
                         [*doc.unresolved, *(parts for v in violations for parts in v.unusable)])
    data = with_defaults(CONNECTOR_SCHEMA, _without(doc.data, unusable))
    problems += _error_policy_problems(doc, data)
    message_schema = _message_schema(doc, data.get("validation"), problems)
    return ConnectorCheck(problems, _connector_config(doc, data, message_schema), unusable)


def load_connector(path: Path, env: Mapping[str, str] | None = None) -> ConnectorConfig:
    """Load one connector file. Raises ConfigError with every problem in it."""
    check = check_connector(path, env)
    if check.problems:
        raise ConfigError(check.problems[0], check.problems)
    return check.config


def _whole_value(parts: tuple) -> tuple:
    """The key path to set aside for a problem at `parts`: a list goes whole (its indexes must not shift)."""
    for i, part in enumerate(parts):
        if isinstance(part, int):
            return parts[:i]
    return parts


def _without(data: dict, paths: Iterable[tuple]) -> dict:
    """A copy of `data` without the values at `paths`."""
    data = copy.deepcopy(data)
    for parts in paths:
        parent = data
        for part in parts[:-1]:
            parent = parent.get(part) if isinstance(parent, dict) else None
        if parts and isinstance(parent, dict):
            parent.pop(parts[-1], None)
    return data


def _connector_config(doc: YamlDocument, data: Mapping[str, Any], message_schema) -> ConnectorConfig:
    """`data` has its defaults filled in; a required key it lacks (already a problem) is left empty."""
    batch, errors, consumer = data["batch"], data["errors"], data["consumer"]
    name = data.get("name", "")
    return ConnectorConfig(
        name=name,
        topic=data.get("topic", ""),
        plugin=data["mapper"].get("plugin", ""),
        plugin_config=data["mapper"]["config"],
        tables=data["tables"],
        max_rows=batch["max_rows"],
        max_wait_ms=batch["max_wait_ms"],
        tolerance=errors["tolerance"],
        dead_letter_table=errors["dead_letter"]["table"],
        dead_letter_topic=errors["dead_letter"]["topic"],
        group_id=consumer.get("group_id") or f"sinkframe-{name}",
        consumer_properties={k: str(v).lower() if isinstance(v, bool) else str(v)
                             for k, v in consumer["properties"].items()},
        enabled=data["enabled"],
        message_schema=message_schema,
        tenant=data.get("tenant"),
        alerts=tuple(data["alerts"]),
        alerts_topic=data["alerts_topic"],
        models=tuple(data["models"]),
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
    if data["alerts_topic"] is not None and data["alerts_topic"] == data.get("topic"):
        problems.append(doc.problem(("alerts_topic",), "the alerts topic must not be the topic the connector "
                                    "consumes"))
    if dead_letter["topic"] is not None and dead_letter["topic"] == data.get("topic"):
        problems.append(doc.problem(("errors", "dead_letter", "topic"), "the dead-letter topic must not be the "
                                    "topic the connector consumes"))
    return problems


def _message_schema(doc: YamlDocument, validation: Mapping[str, Any] | None, problems: list[str]):
    """The message JSON Schema of `validation`, checked; None when there is none."""
    if not validation:
        return None
    from sinkframe.mapping.validation import schema_validator

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
