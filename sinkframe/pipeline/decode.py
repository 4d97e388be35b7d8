"""Message bytes -> a JSON object. The first stage where a record can be poison."""
from __future__ import annotations

from typing import Any

import orjson

from sinkframe.errors import RecordError


def decode_json_object(value: bytes | None) -> dict[str, Any]:
    if value is None:
        raise RecordError("decode", "message has no value (tombstone)")
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError as err:
        # orjson rejects invalid UTF-8 too; its message says which.
        raise RecordError("decode", f"not valid UTF-8 JSON: {err}") from None
    if not isinstance(obj, dict):
        raise RecordError("decode", f"expected a JSON object, got {type(obj).__name__}")
    return obj
