"""Message bytes -> a JSON object. The first stage where a record can be poison."""
from __future__ import annotations

import json
import re
from typing import Any

import orjson

from sinkframe.errors import RecordError

# orjson turns integers beyond 64 bits into floats, silently losing digits. Such
# a number has at least 19 digits in a row; messages holding one (rare) are
# decoded by the standard library instead, which keeps every digit. A run of 19
# digits inside a string also takes that path: slower, still correct.
_LONG_DIGITS = re.compile(rb"\d{19}")


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
    if _LONG_DIGITS.search(value):
        obj = json.loads(value)  # valid JSON (orjson said so); exact big integers
    return obj
