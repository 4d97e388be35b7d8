"""How well alarms foretell the failing contacts of a simulated run, against its ground truth. Pure.

The ground truth is the JSON `sinkframe simulate --degrading N --truth FILE`
writes (`Fleet.truth()`): the breakers, and for each failing contact its onset
and thermal trip. Measured over the rows scored:

- caught: a degrading breaker alarmed between its onset and its trip; its lead
  time is the trip minus the first such alarm;
- false alarms: alarm episodes (an alarmed row after a row that was not) on the
  breakers that do not degrade, per 100 breaker-days of their scored rows.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from statistics import median
from typing import Any, Mapping, Sequence

import numpy as np

LEAD_TARGET_SECONDS = 1800.0  # a warning is useful when it comes at least this long before the trip


@dataclass
class Evaluation:
    degrading: int
    caught: int  # alarmed before the trip
    caught_in_time: int  # alarmed at least LEAD_TARGET_SECONDS before the trip
    median_lead_seconds: float | None
    healthy: int
    healthy_days: float
    false_alarms: int
    rows: int
    seconds_scoring: float
    leads: dict[str, float | None]  # device -> lead (None: not alarmed before its trip)

    @property
    def share_in_time(self) -> float:
        return self.caught_in_time / self.degrading if self.degrading else 0.0

    @property
    def false_alarms_per_100_days(self) -> float:
        return 100.0 * self.false_alarms / self.healthy_days if self.healthy_days else 0.0

    @property
    def microseconds_per_row(self) -> float:
        return 1e6 * self.seconds_scoring / self.rows if self.rows else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "share_in_time": self.share_in_time,
                "false_alarms_per_100_days": self.false_alarms_per_100_days,
                "microseconds_per_row": self.microseconds_per_row}


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def evaluate(truth: Mapping[str, Any], keys: Sequence[str], times: np.ndarray, alarms: np.ndarray,
             *, seconds_scoring: float) -> Evaluation:
    """Compare alarms (per row: key, epoch time, alarm) with the ground truth of the run."""
    faults = {f["device_id"]: (_epoch(f["onset"]), _epoch(f["trip"])) for f in truth["degrading"]}
    keys = np.asarray(keys, dtype=object)
    order = np.lexsort((times, keys))
    keys, times, alarms = keys[order], np.asarray(times)[order], np.asarray(alarms, dtype=bool)[order]
    bounds = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1], True])
    leads: dict[str, float | None] = {device: None for device in faults}
    false_alarms, healthy, healthy_seconds = 0, 0, 0.0
    breakers = set(truth.get("breakers") or keys)
    for start, end in zip(bounds[:-1], bounds[1:]):
        key = keys[start]
        if key not in breakers:
            continue
        key_times, key_alarms = times[start:end], alarms[start:end]
        if key in faults:
            onset, trip = faults[key]
            before = key_alarms & (key_times >= onset) & (key_times < trip)
            if before.any():
                leads[key] = float(trip - key_times[np.argmax(before)])
            continue
        healthy += 1
        healthy_seconds += float(key_times[-1] - key_times[0]) if end - start > 1 else 0.0
        false_alarms += int(key_alarms[0]) + int(np.count_nonzero(key_alarms[1:] & ~key_alarms[:-1]))
    found = [lead for lead in leads.values() if lead is not None]
    return Evaluation(
        degrading=len(faults), caught=len(found),
        caught_in_time=sum(1 for lead in found if lead >= LEAD_TARGET_SECONDS),
        median_lead_seconds=median(found) if found else None, healthy=healthy,
        healthy_days=healthy_seconds / 86400.0, false_alarms=false_alarms, rows=len(keys),
        seconds_scoring=seconds_scoring, leads=leads)


def render_text(evaluation: Evaluation, *, cost: bool = True) -> str:
    e = evaluation
    lead = "-" if e.median_lead_seconds is None else f"{e.median_lead_seconds / 60:.0f} min"
    lines = [
        f"degrading breakers alarmed before their trip: {e.caught}/{e.degrading}; "
        f">= {LEAD_TARGET_SECONDS / 60:.0f} min before: {e.caught_in_time}/{e.degrading} "
        f"({100 * e.share_in_time:.0f}%); median lead {lead}",
        f"false alarms: {e.false_alarms} on {e.healthy} healthy breakers over {e.healthy_days:.1f} breaker-days "
        f"= {e.false_alarms_per_100_days:.2f} per 100 breaker-days",
    ]
    if cost:
        lines.append(f"scoring cost: {e.microseconds_per_row:.2f} us/row of CPU ({e.rows} rows in "
                     f"{e.seconds_scoring:.2f} s, batches of {BATCH_ROWS} rows)")
    for device, value in sorted(e.leads.items()):
        lines.append(f"  {device}: " + ("not alarmed before its trip" if value is None
                                         else f"alarmed {value / 60:.0f} min before its trip"))
    return "\n".join(lines)


# -- against the database: `sinkframe models evaluate` ------------------------------------------

BATCH_ROWS = 20_000  # rows per scoring call, as a sink's batch


@dataclass
class ModelEvaluation:
    connector: str
    model: str
    version: int
    rescored: Evaluation  # the rows of the window scored again here (what scoring costs is measured here)
    stream: Evaluation | None  # the alarms the sink stored in sinkframe_scores for the window, if any


def evaluate_models(paths, settings, truth: Mapping[str, Any], *, since: datetime | None = None,
                    until: datetime | None = None, plugins_dirs=()) -> list[ModelEvaluation]:
    """Each model's newest version on the rows of [since, until) (default: the truth's window)."""
    import time
    from datetime import timezone

    from sinkframe.errors import ModelError
    from sinkframe.mapping.registry import PluginRegistry
    from sinkframe.models import detector, store
    from sinkframe.models.fit import bound_models, connect
    from sinkframe.models.history import read_rows
    from sinkframe.models.params import detector_from_json
    from sinkframe.pipeline.runner import load_connectors

    window = truth.get("window") or [None, None]
    since = since or (datetime.fromtimestamp(_epoch(window[0]), timezone.utc) if window[0] else None)
    until = until or (datetime.fromtimestamp(_epoch(window[1]), timezone.utc) if window[1] else None)
    if since is None:
        raise ModelError("the ground truth has no window: give --since")
    found = []
    with connect(settings, "sinkframe-models-evaluate") as conn:
        for model in bound_models(load_connectors(paths), PluginRegistry(plugins_dirs)):
            with conn.cursor() as cur:
                version = store.latest_versions(cur, model.connector, [model.spec.name]).get(model.spec.name)
                if version is None:
                    raise ModelError(f"connector {model.connector}: model {model.spec.name} has no fitted version; "
                                     "run `sinkframe models fit` first")
                fitted = detector_from_json(store.version_parameters(cur, model.connector, model.spec.name, version),
                                            model=f"{model.connector}/{model.spec.name} version {version}")
            rows = read_rows(conn, model.target.identifier, model.spec, since=since, until=until)
            order = np.argsort(rows.times, kind="stable")  # the stream's order: by time, keys interleaved
            keys = [rows.keys[i] for i in order]
            times, response, loads = rows.times[order], rows.response[order], rows.loads[order]
            states, alarms, spent = {}, [], 0.0
            for lo in range(0, len(keys), BATCH_ROWS):
                part = detector.Rows(keys[lo:lo + BATCH_ROWS], times[lo:lo + BATCH_ROWS],
                                     response[lo:lo + BATCH_ROWS], loads[lo:lo + BATCH_ROWS])
                # CPU time of this process: what scoring costs the sink, whatever else the machine runs.
                began = time.process_time()
                result = detector.score(fitted, part, states)
                spent += time.process_time() - began
                states.update(result.states)
                alarms.append(result.alarm)
            rescored = evaluate(truth, keys, times, np.concatenate(alarms) if alarms else np.zeros(0, bool),
                                seconds_scoring=spent)
            found.append(ModelEvaluation(model.connector, model.spec.name, version, rescored,
                                         _stream(conn, truth, model, since, until)))
    return found


def _stream(conn, truth, model, since, until) -> Evaluation | None:
    from psycopg import sql

    from sinkframe.models import store

    if not conn.execute("SELECT to_regclass(%s) IS NOT NULL", (store.SCORES_TABLE,)).fetchone()[0]:
        return None
    query = sql.SQL("SELECT score_key, extract(epoch FROM bucket)::float8, alarm FROM {} WHERE connector = %s "
                    "AND model = %s AND bucket >= %s AND (%s::timestamptz IS NULL OR bucket < %s)").format(
        sql.Identifier(store.SCORES_TABLE))
    found = conn.execute(query, (model.connector, model.spec.name, since, until, until)).fetchall()
    if not found:
        return None
    return evaluate(truth, [r[0] for r in found], np.array([r[1] for r in found]), np.array([r[2] for r in found]),
                    seconds_scoring=0.0)
