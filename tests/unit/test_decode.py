"""The decode stage: bytes -> JSON object, or a decode-stage RecordError."""
from __future__ import annotations

import pytest

from sinkframe.errors import RecordError
from sinkframe.pipeline.decode import decode_json_object


def test_object_decoded():
    assert decode_json_object(b'{"device_id": "a", "v": 1.5, "n": null}') == {"device_id": "a", "v": 1.5, "n": None}


def test_integers_beyond_64_bits_keep_every_digit():
    value = decode_json_object(b'{"big": 123456789012345678901234567890, "neg": -9223372036854775809}')
    assert value == {"big": 123456789012345678901234567890, "neg": -9223372036854775809}
    assert isinstance(value["big"], int)


@pytest.mark.parametrize("raw, reason", [
    (None, "tombstone"),
    (b"not json", "not valid UTF-8 JSON"),
    (b'{"a": "\xff"}', "not valid UTF-8 JSON"),
    (b"[1, 2]", "expected a JSON object, got list"),
    (b'"text"', "expected a JSON object, got str"),
])
def test_poison_is_a_decode_error(raw, reason):
    with pytest.raises(RecordError) as info:
        decode_json_object(raw)
    assert info.value.stage == "decode" and reason in info.value.reason
