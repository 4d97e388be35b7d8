"""What processes cost, read from /proc (Linux): peak RSS and CPU seconds, per process and thread.

On other systems every reader returns None or empty, and the report says so.
"""
from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def peak_rss_kib(pid: int) -> int | None:
    """VmHWM: the most resident memory the process has had since it started."""
    status = _read(PROC / str(pid) / "status")
    for line in (status or "").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return None


def children(pid: int) -> list[int]:
    found = []
    for task in (PROC / str(pid) / "task").glob("*"):
        text = _read(task / "children")
        if text:
            found.extend(int(c) for c in text.split())
    return found


def descendants(pid: int) -> list[int]:
    result, todo = [], [pid]
    while todo:
        kids = children(todo.pop())
        result.extend(kids)
        todo.extend(kids)
    return result


def _stat_fields(stat_path: Path) -> tuple[str, list[str]] | None:
    text = _read(stat_path)
    if not text:
        return None
    # comm is in parentheses and may contain spaces; the fields after it are fixed.
    comm = text[text.index("(") + 1:text.rindex(")")]
    return comm, text[text.rindex(")") + 2:].split()


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU of the whole process (all threads) so far."""
    parsed = _stat_fields(PROC / str(pid) / "stat")
    if parsed is None:
        return None
    fields = parsed[1]
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime


def comm(pid: int) -> str | None:
    text = _read(PROC / str(pid) / "comm")
    return text.strip() if text else None


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread name: librdkafka names its threads rdk:*, Python threads keep the process name."""
    totals: dict[str, float] = {}
    for task in (PROC / str(pid) / "task").glob("*"):
        parsed = _stat_fields(task / "stat")
        if parsed is None:
            continue
        name, fields = parsed
        group = "librdkafka " + name.split(":")[1].rstrip("0123456789/-") if name.startswith("rdk:") else "python"
        totals[group] = totals.get(group, 0.0) + (int(fields[11]) + int(fields[12])) / _TICKS
    return {k: round(v, 2) for k, v in sorted(totals.items())}


class CpuMeter:
    """CPU used by a set of processes between `start()` and `stop()`, new processes included."""

    def __init__(self, find_pids):
        self._find = find_pids
        self._before: dict[int, float] = {}

    def start(self) -> "CpuMeter":
        self._before = {pid: cpu_seconds(pid) or 0.0 for pid in self._find()}
        return self

    def stop(self) -> float:
        used = 0.0
        for pid in self._find():
            now = cpu_seconds(pid)
            if now is not None:
                used += now - self._before.get(pid, 0.0)
        return round(used, 2)
