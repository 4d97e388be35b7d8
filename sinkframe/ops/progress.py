"""What `sinkframe run` shows while it runs.

On a terminal: one status line redrawn every second (msgs/s, rows/s, lag,
errors). Elsewhere (a container, a log file): a summary log line every
`summary_every` seconds, which `--log-format json` turns into JSON like any log.
"""
from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from typing import TextIO
from sinkframe.pipeline.stats import ConnectorState

log = logging.getLogger("sinkframe.progress")


@dataclass(frozen=True)
class Totals:
    at: float
    messages: int
    rows: int
    errors: int
    dead_letters: int
    states: tuple[str, ...]

    @classmethod
    def of(cls, tasks, at: float | None = None, stalls=None) -> "Totals":
        """`stalls` (ops/lag.py StallWatch): running connectors that make no progress count as 'stalled'."""
        return cls(
            at=time.monotonic() if at is None else at,
            messages=sum(t.stats.messages for t in tasks),
            rows=sum(sum(dict(t.stats.rows_by_table).values()) for t in tasks),
            errors=sum(sum(dict(t.stats.errors_by_stage).values()) for t in tasks),
            dead_letters=sum(t.stats.dead_letters for t in tasks),
            states=tuple("stalled" if stalls is not None and stalls.stalled_for(t.stats) is not None
                         else t.stats.state for t in tasks),
        )


def human(n: float) -> str:
    """1234 -> 1.2k, 3400000 -> 3.4M."""
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= limit:
            return f"{n / limit:.1f}{suffix}"
    return f"{n:.0f}"


def describe(before: Totals, now: Totals, lag: int | None) -> dict:
    seconds = max(now.at - before.at, 1e-9)
    waiting = sum(1 for s in now.states if s == ConnectorState.WAITING_FOR_DATABASE)
    return {
        "msgs_per_s": (now.messages - before.messages) / seconds,
        "rows_per_s": (now.rows - before.rows) / seconds,
        "lag": lag,
        "errors": now.errors,
        "dead_letters": now.dead_letters,
        "messages": now.messages,
        "rows": now.rows,
        "running": sum(1 for s in now.states if s == ConnectorState.RUNNING),
        "connectors": len(now.states),
        "waiting_for_database": waiting,
        "stalled": sum(1 for s in now.states if s == "stalled"),
    }


def format_line(d: dict) -> str:
    lag = "?" if d["lag"] is None else human(d["lag"])
    parts = [f"{human(d['msgs_per_s'])} msg/s", f"{human(d['rows_per_s'])} rows/s", f"lag {lag}",
             f"errors {human(d['errors'])}", f"total {human(d['messages'])} msgs / {human(d['rows'])} rows",
             f"{d['running']}/{d['connectors']} running"]
    if d["waiting_for_database"]:
        parts.append(f"{d['waiting_for_database']} WAITING FOR DATABASE")
    if d.get("stalled"):
        parts.append(f"{d['stalled']} STALLED")
    return "sinkframe | " + " | ".join(parts)


class Progress:
    def __init__(self, *, live: bool, stream: TextIO | None = None, refresh: float = 1.0,
                 summary_every: float = 30.0):
        self.live = live
        self.stream = stream or sys.stderr
        self.interval = refresh if live else summary_every
        self._last: Totals | None = None
        self._shown = False
        self._handlers = []
        if live:  # a log record first clears the status line, so the two do not mix
            self._handlers = [h for h in logging.getLogger().handlers
                              if getattr(h, "stream", None) is self.stream]
            for handler in self._handlers:
                handler.addFilter(self._clear_line)

    def update(self, tasks, lag: int | None, *, now: float | None = None, stalls=None) -> None:
        """Call often; draws (or logs) once per interval."""
        totals = Totals.of(tasks, now, stalls)
        if self._last is None:
            self._last = totals
            return
        if totals.at - self._last.at < self.interval:
            return
        summary = describe(self._last, totals, lag)
        self._last = totals
        if self.live:
            width = 160
            self.stream.write("\r\x1b[2K" + format_line(summary)[:width])
            self.stream.flush()
            self._shown = True
        else:
            log.info("%s", format_line(summary).removeprefix("sinkframe | "))

    def _clear_line(self, _record) -> bool:
        if self._shown:
            self.stream.write("\r\x1b[2K")
        return True

    def close(self) -> None:
        for handler in self._handlers:
            handler.removeFilter(self._clear_line)
        if self.live and self._shown:
            self.stream.write("\n")
            self.stream.flush()
