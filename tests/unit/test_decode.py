"""The decode stage: bytes -> JSON object, or a decode-stage RecordError."""
from __future__ import annotations

import pytest

from sinkframe.errors import RecordError
from sinkframe.mapping.decode import decode_json_object


def test_object_decoded():
    assert decode_json_object(b'{"device_id": "a", "v": 1.5, "n": null}') == {"device_id": "a", "v": 1.5, "n": None}


def test_64_bit_integers_are_exact_and_larger_ones_become_floats():
    # The documented trade-off of decoding with orjson (see decode.py and the README).
    value = decode_json_object(b'{"u64": 18446744073709551615, "i64": -9223372036854775808, "big": 1' + b"0" * 25 + b"}")
    assert value["u64"] == 18446744073709551615 and value["i64"] == -9223372036854775808
    assert value["big"] == 1e25 and isinstance(value["big"], float)


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
