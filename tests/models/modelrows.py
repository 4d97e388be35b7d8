"""Simulated breaker rows as the detector reads them (for the model tests)."""
from __future__ import annotations

from datetime import datetime

import numpy as np
import orjson

from sinkframe.models.detector import Rows
from sinkframe.simulator import Fleet

FEATURES = ("temperature", "current_phase_a", "current_phase_b", "current_phase_c")


def fleet_rows(fleet: Fleet, start: float, end: float, interval: float) -> Rows:
    """The smart_breaker readings of `fleet` in stream order, as the detector's Rows."""
    keys, times, response, loads = [], [], [], []
    for message in fleet.history(start, end, interval):
        if message.kind != "smart_breaker":
            continue
        body = orjson.loads(message.value)
        values = body["measurements"]
        keys.append(body["device_id"])
        times.append(datetime.fromisoformat(body["timestamp"].replace("Z", "+00:00")).timestamp())
        response.append(values["temperature"])
        loads.append([values[name] for name in FEATURES[1:]])
    return Rows(keys, np.array(times), np.array(response, dtype=float), np.array(loads, dtype=float))


def take(rows: Rows, mask: np.ndarray) -> Rows:
    picked = np.flatnonzero(mask)
    return Rows([rows.keys[i] for i in picked], rows.times[picked], rows.response[picked], rows.loads[picked])
