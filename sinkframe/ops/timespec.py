"""Time spans and instants as people type them on a command line: `90s`, `24h`, `7d`, ISO-8601."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")


def parse_duration(text: str) -> float:
    """`90s`, `15m`, `24h`, `7d`, `2w`, `500ms`, or a bare number of seconds -> seconds."""
    match = _SPAN.match(text or "")
    if not match:
        raise ValueError(f"{text!r}: expected a duration such as 90s, 15m, 24h or 7d")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def parse_instant(text: str, *, now: datetime | None = None) -> datetime:
    """A point in time: `now`, a duration ago (`24h`), or ISO-8601 (no offset = UTC)."""
    now = now or datetime.now(timezone.utc)
    if text.strip().lower() == "now":
        return now
    if _SPAN.match(text):
        return now - timedelta(seconds=parse_duration(text))
    raw = text.strip()
    if raw[-1:] in ("Z", "z"):
        raw = raw[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"{text!r}: expected `now`, a duration ago (24h, 7d) or an ISO-8601 time "
                         "(2026-01-31T12:00:00Z)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
