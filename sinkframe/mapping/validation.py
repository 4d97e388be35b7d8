"""Stage `validate`: an optional JSON Schema every message of a connector must match.

It runs after decoding and before the mapper, so that a producer's contract
(required fields, types, ranges) is checked in one declarative place and a
violation becomes a dead letter naming the JSON path, instead of a mapper
exception or a database error later on.
"""
from __future__ import annotations

from typing import Any, Mapping

import jsonschema

from sinkframe.errors import RecordError

# At most this many violations are named in one dead letter (the rest are counted).
MAX_REPORTED = 3
MAX_MESSAGE_CHARS = 200


def schema_validator(schema: Mapping[str, Any]) -> jsonschema.protocols.Validator:
    """A validator for `schema` (its `$schema`, else draft 2020-12); raises jsonschema.SchemaError."""
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


class MessageValidator:
    def __init__(self, schema: Mapping[str, Any]):
        self._validator = schema_validator(schema)

    def validate(self, message: Any) -> None:
        """Return if `message` matches the schema, else raise RecordError("validate", ...)."""
        errors = self._validator.iter_errors(message)
        if next(errors, None) is None:
            return
        everything = sorted(self._validator.iter_errors(message), key=lambda e: [str(p) for p in e.absolute_path])
        named = "; ".join(describe(e) for e in everything[:MAX_REPORTED])
        more = len(everything) - MAX_REPORTED
        raise RecordError("validate", named + (f"; and {more} more" if more > 0 else ""))


def describe(error: jsonschema.ValidationError) -> str:
    """`$.measurements.temperature: 'hot' is not of type 'number'`, cut to a readable length."""
    path = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    text = error.message
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[:MAX_MESSAGE_CHARS - 3] + "..."
    return f"{path}: {text}"
