"""`sinkframe run --workers N`: N sink processes in one consumer group.

Partitions are the unit of parallelism (as in any Kafka consumer group): each
process owns a share of the partitions and writes them exactly once through its
own pool. Separate processes, not threads, because decoding and mapping are
Python code that the GIL would serialise. The parent only starts the children,
forwards SIGTERM/SIGINT and reports the worst exit code.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from typing import Sequence

log = logging.getLogger(__name__)


def run_workers(count: int, child_args: Sequence[str]) -> int:
    command = [sys.executable, "-m", "sinkframe.cli", *child_args]
    env = {k: v for k, v in os.environ.items() if k != "SINKFRAME_METRICS_PORT"}  # one port, one process
    children = [subprocess.Popen(command, env=env) for _ in range(count)]
    log.info("started %d worker processes: %s", count, ", ".join(str(c.pid) for c in children))

    def forward(signum, _frame):
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while any(c.poll() is None for c in children):
        failed = [c for c in children if c.poll() not in (None, 0)]
        if failed:  # one worker failed: stop the others rather than run degraded silently
            log.error("worker %d exited with %d; stopping the others", failed[0].pid, failed[0].returncode)
            forward(signal.SIGTERM, None)
            break
        time.sleep(0.2)
    codes = [c.wait() for c in children]
    return max(codes, key=abs)
