"""Polling until something holds."""
from __future__ import annotations

import time


def wait_for(predicate, *, timeout: float, interval: float = 0.1, message: str = "condition"):
    """Call `predicate` every `interval` s until it returns something true, and return that;
    fail the test if `timeout` s pass first."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)
