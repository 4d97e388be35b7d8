"""Read a py-spy raw profile ("frame;frame;... count" per line) into its top entries and pipeline stages.

The profile is recorded with --idle, so the connector thread is sampled whether
it computes or waits: its samples add up to its wall time. Only that thread is
summarized (the runner's main thread and the pool's threads mostly sleep).
Without --native, time in C code (librdkafka, orjson, psycopg's C encoder, libpq)
is charged to the Python line that called it, which is what the stages rely on:
a stack ending at the consume() call is librdkafka (fetching, or waiting for
data), one ending in `Copy.write_row` is row encoding, and so on.
"""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

# Innermost frame first: the first rule that matches any frame (leaf to root) names the stage.
STAGES = (
    ("decode (orjson / msgspec)", ("decode_json_object", "mapping/decode.py", "fastdecode", "msgspec")),
    ("map (mapper plugin)", ("plugins/", "sinkframe_plugins/", "sinkframe/mapping/")),
    ("route (tenants)", ("pipeline/route.py",)),
    ("COPY write_row (encode + send rows)", ("write_row",)),
    ("COPY end (server finishes the COPY)", ("Copy.__exit__", "Copy.finish", "_end_copy")),
    ("metadata merge (Python)", ("merge_keyed_rows",)),
    ("alerts", ("sinkframe/alerts/",)),
    ("offsets UPDATE", ("advance_offsets", "offsets.py")),
    ("transaction commit / pool", ("Transaction.__exit__", "commit", "pool.py")),
    ("other writer work (statements)", ("writer.py",)),
    ("batch building (skip, columns)", ("BatchBuilder", "pipeline/batch.py", "pipeline/consume/records.py")),
    ("waiting for the writer", ("_wait_for_writer", "WriteStage.wait")),
    ("consume() (librdkafka, fetch + message objects)", ("_poll ", "Consumer.consume", ".consume (")),
    ("task loop (incl. freeing the written batch)", ("ConnectorTask.run",)),
    ("waiting for the next batch", ("WriteStage._run",)),
)
# The two threads of a connector, by the function at the root of their stacks.
THREADS = {"connector": "ConnectorTask.run", "writer": "WriteStage._run"}
_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")
_LOCATION = re.compile(r":\d+\)$")


def read_stacks(path: Path) -> Counter:
    stacks: Counter = Counter()
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        match = _LINE.match(line.strip())
        if match:
            stacks[tuple(match["stack"].split(";"))] += int(match["count"])
    return stacks


def stage_of(stack: tuple[str, ...]) -> str:
    for frame in reversed(stack):
        for stage, patterns in STAGES:
            if any(p in frame for p in patterns):
                return stage
    return "other"


def summarize(path: Path, *, top: int = 15) -> dict:
    """Per connector thread and writer thread: shares of its samples (its wall time), by stage, line, function."""
    every = read_stacks(path)
    return {name: _summarize_thread(Counter({s: c for s, c in every.items() if any(root in f for f in s)}), top)
            for name, root in THREADS.items()}


def _summarize_thread(stacks: Counter, top: int) -> dict:
    total = sum(stacks.values())
    if not total:
        return {"samples": 0}
    self_time: Counter = Counter()
    inclusive: Counter = Counter()
    stages: Counter = Counter()
    for stack, count in stacks.items():
        self_time[stack[-1]] += count
        for function in {_LOCATION.sub(")", frame) for frame in stack}:
            inclusive[function] += count
        stages[stage_of(stack)] += count

    def share(counter: Counter, n: int) -> list[list]:
        return [[name, round(100 * count / total, 1)] for name, count in counter.most_common(n)]

    return {
        "samples": total,
        "rate_hz": 100,
        "scope": "wall time (py-spy --idle)",
        "stages_percent": dict(share(stages, len(STAGES) + 1)),
        "top_self_percent": share(self_time, top),
        "top_inclusive_percent": share(inclusive, top),
    }
