"""Typed JSON decoding (msgspec) that gives the values the per-record path's orjson gives.

Where a fast path needs typed values rather than a message kept whole, a
msgspec decode into a `Struct` checks every type in C and builds no dict: it
costs less than orjson's decode alone, and leaves no per-field Python checks. What matters is that a
message it accepts is one orjson accepts, with equal values, so that the fast
path's row is the per-record path's. That holds for the types below, which is
why a fast path's structs use only these:

- Structs forbid unknown fields and hold no `msgspec.Raw` or `Any`: msgspec
  skips unknown or raw values without checking their UTF-8 or number range,
  where orjson rejects the message.
- `str`: both reject invalid UTF-8, lone surrogates and raw control characters,
  and decode escapes alike.
- `float`: both round correctly, so they agree on every number, an integer
  written where a float goes included (orjson's int, then `float()`); one
  beyond double range is an error in both.
- `Int32` / `Int64`: msgspec keeps any integer exact, orjson turns those beyond
  64 bits into floats, so integers are bounded to where both give the same int.
- Duplicate keys: both keep the last value, and msgspec checks the earlier ones
  against the same type.

`tests/unit/test_fast_path_properties.py` checks all of it against `map_each`.
"""
from __future__ import annotations

from typing import Annotated, Union

import msgspec

Int32 = Annotated[int, msgspec.Meta(ge=-(2**31), le=2**31 - 1)]
Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
JsonScalar = Union[Int64, float, str, bool, None]
# A JSON object of scalars, and of arrays and objects of scalars: a device's
# metadata (capabilities, a structured location), an FDI package.
ShallowObject = dict[str, Union[JsonScalar, list[JsonScalar], dict[str, JsonScalar]]]
