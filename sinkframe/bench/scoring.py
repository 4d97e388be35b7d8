"""Scoring on: the shipped smart-breaker connector with its contact_health model (issue 18), end to end.

The model needs hours of each device's history. It fits a key only on the rows
from two of the longest thermal time constants after the key's first row on
(detector.SETTLE_TAUS x max(TAU_CHOICES): an hour of event time), and needs
detector.MIN_ROWS of them. The end-to-end workload puts a device's rows one
second apart, so a million messages cover 17 minutes: nothing could be fitted.
This section produces the same messages with their times spread out
(`ScoringWorkload`: a device's rows `interval_seconds` apart, from today's
midnight, so on TimescaleDB they land in the current chunk as in `end_to_end`)
and drains them twice, each time on a fresh topic of a fresh broker:

1. `sinkframe run` with the benchmark's connector file (scoring off): it fills
   `smart_breaker_data` with the history, and gives the figure scoring is compared
   with, on the same messages;
2. `fit_models` on those rows, with a copy of the connector file that has
   `SMART_BREAKER_MODELS` appended (the models: block configs/smart_breaker.yaml
   documents, and its alert rule on the score);
3. `sinkframe run` with that copy (scoring on); the tables are emptied first, so
   every row is written, and scored, again.

A key's rows are not scored, by the detector's design, until its lagged load has
warmed up for two of its time constants (300..1800 s, chosen per key at fit). So
the rows scored are the rows written minus those; the section counts them from
the fitted time constants and reports both figures, and whether they agree.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable

import psycopg
from psycopg import sql

from sinkframe.bench.endtoend import run_end_to_end
from sinkframe.bench.services import BenchContext
from sinkframe.bench.workload import BASE_TIME, DEVICES, spaced
from sinkframe.config.settings import Settings
from sinkframe.mapping.registry import PluginRegistry
from sinkframe.models import detector, store
from sinkframe.models.fit import BoundModel, FitResult, bound_models, fit_models
from sinkframe.models.params import detector_from_json
from sinkframe.models.spec import SMART_BREAKER_MODELS
from sinkframe.pipeline.runner import load_connectors

SCORED_CONFIG_NAME = "smart_breaker_scored.yaml"
# Two of the longest time constants: a key's rows before that are left out of its fit.
SETTLE_SECONDS = detector.SETTLE_TAUS * max(detector.TAU_CHOICES)
SPARE_ROWS = 2  # rows per device beyond the fit's minimum, so that every key is fitted
MIN_ROWS_PER_DEVICE = detector.MIN_ROWS + 10  # a smaller run (--quick) is raised to this many
MIN_INTERVAL_SECONDS = 70  # a million messages (1,000 rows a device) then cover under a day
# Intervals are whole multiples of 7 s: no row then lies exactly two time constants (multiples of
# 300 s) after its key's first, where float rounding would decide whether the sink scores it.
INTERVAL_UNIT_SECONDS = 7


@dataclass(frozen=True)
class ScoringWorkload:
    """The workload's messages, a device's rows `interval_seconds` apart from BASE_TIME on."""

    messages: int
    interval_seconds: int

    @classmethod
    def for_messages(cls, requested: int) -> "ScoringWorkload":
        """At least MIN_ROWS_PER_DEVICE rows per device, spaced so that every key can be fitted."""
        messages = max(requested, MIN_ROWS_PER_DEVICE * DEVICES)
        rows_per_device = messages // DEVICES  # at least; some devices get one more
        fitting = rows_per_device - detector.MIN_ROWS - SPARE_ROWS
        wanted = max(MIN_INTERVAL_SECONDS, SETTLE_SECONDS / fitting)
        return cls(messages, INTERVAL_UNIT_SECONDS * math.ceil(wanted / INTERVAL_UNIT_SECONDS))

    @property
    def step(self) -> timedelta:
        return timedelta(seconds=self.interval_seconds) / DEVICES

    @property
    def end(self) -> datetime:
        """One step past the last message's time."""
        return BASE_TIME + self.messages * self.step

    def values(self) -> Callable[[int], bytes]:
        return spaced(BASE_TIME, self.step)


def write_scored_config(ctx: BenchContext) -> Path:
    """The benchmark's connector file with SMART_BREAKER_MODELS appended, beside the logs."""
    scored = ctx.workdir / SCORED_CONFIG_NAME
    scored.write_text(ctx.config.read_text() + SMART_BREAKER_MODELS)
    return scored


def run_scoring(ctx: BenchContext, requested: int, end_to_end: dict, *,
                say: Callable[[str], None] = print) -> dict:
    workload = ScoringWorkload.for_messages(requested)
    say(f"scoring: {workload.messages:,} messages, a device's rows {workload.interval_seconds} s apart; "
        "drained with scoring off, the model fitted on them, drained again with scoring on")
    off = run_end_to_end(ctx, workload.messages, name="scoring_off", values=workload.values())
    scored_config = write_scored_config(ctx)
    model = bound_models(load_connectors([scored_config]), PluginRegistry())[0]
    settings = Settings.from_env().with_overrides(database_url=ctx.dsn)
    span = (workload.end - BASE_TIME).total_seconds()
    fitted = fit_models([scored_config], settings, since=span + 1.0, until=workload.end)[0]
    on = run_end_to_end(replace(ctx, config=scored_config), workload.messages, name="scoring_on",
                        values=workload.values())
    counts = score_counts(ctx.dsn, model, fitted.version)
    return summarize(workload, requested, scored_config, fitted, off, on, end_to_end, counts)


def score_counts(dsn: str, model: BoundModel, version: int) -> dict:
    """The rows scored (sinkframe_scores), its rows (one per key and minute), and the rows the detector
    should have scored: each fitted key's rows from two of its time constants after its first row on."""
    scores = sql.Identifier(store.SCORES_TABLE)
    key, moment = sql.Identifier(model.spec.key), sql.Identifier(model.spec.time_column)
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        scored, minutes = cur.execute(
            sql.SQL("SELECT coalesce(sum(rows), 0), count(*) FROM {} WHERE connector = %s AND model = %s")
            .format(scores), (model.connector, model.spec.name)).fetchone()
        parameters = store.version_parameters(cur, model.connector, model.spec.name, version)
        fitted = detector_from_json(parameters, model=f"{model.connector}/{model.spec.name} version {version}")
        keys = list(fitted.baselines)
        settle = [detector.SETTLE_TAUS * fitted.baselines[k].tau for k in keys]
        expected = cur.execute(sql.SQL(
            "SELECT count(*) FROM {table} AS d "
            "JOIN (SELECT {key}::text AS k, min({time}) AS first FROM {table} GROUP BY 1) AS f ON d.{key}::text = f.k "
            "JOIN unnest(%s::text[], %s::float8[]) AS u(k, settle) ON u.k = f.k "
            "WHERE d.{time} >= f.first + make_interval(secs => u.settle)").format(
            table=model.target.identifier, key=key, time=moment), (keys, settle)).fetchone()[0]
    return {"rows_scored": int(scored), "rows_scored_expected": int(expected), "score_rows": minutes}


def _run_view(run: dict) -> dict:
    keys = ("messages", "msgs_per_second", "msgs_per_second_first_to_last_commit", "seconds_from_assignment",
            "assignment_wait_seconds", "rows_counted", "rows_with_distinct_source", "dead_letters", "peak_rss_mb",
            "cpu_seconds", "exit_codes", "log")
    return {k: run.get(k) for k in keys}


def _ratio(a, b) -> float | None:
    return round(a / b, 3) if a and b else None


def summarize(workload: ScoringWorkload, requested: int, scored_config: Path, fitted: FitResult, off: dict,
              on: dict, end_to_end: dict, counts: dict) -> dict:
    written = on["rows_counted"]
    extra_cpu = on["cpu_seconds"]["sink"] - off["cpu_seconds"]["sink"]
    return {
        "messages": workload.messages,
        "messages_requested": requested,
        "devices": DEVICES,
        "row_interval_seconds": workload.interval_seconds,
        "message_times": [BASE_TIME.isoformat(), (workload.end - workload.step).isoformat()],
        "connector": str(scored_config),
        "model": fitted.model,
        "fit": {"version": fitted.version, "rows": fitted.rows, "seconds": round(fitted.seconds, 2),
                "keys": fitted.metrics["keys"], "keys_fitted": fitted.metrics["keys_fitted"],
                "threshold": round(fitted.metrics["threshold"], 4)},
        "scoring_off": _run_view(off),
        "scoring_on": _run_view(on),
        "msgs_per_second": on["msgs_per_second"],
        "msgs_per_second_scoring_off": off["msgs_per_second"],
        "ratio_to_scoring_off": _ratio(on["msgs_per_second"], off["msgs_per_second"]),
        "ratio_to_end_to_end": _ratio(on["msgs_per_second"], end_to_end["msgs_per_second"]),
        "rows_written": written,
        "rows_scored": counts["rows_scored"],
        "rows_not_scored": written - counts["rows_scored"],
        "rows_scored_expected": counts["rows_scored_expected"],
        "scored_as_expected": counts["rows_scored"] == counts["rows_scored_expected"],
        "score_rows": counts["score_rows"],
        "sink_cpu_seconds_extra": round(extra_cpu, 2),
        "sink_cpu_us_extra_per_row_scored": round(extra_cpu * 1e6 / counts["rows_scored"], 2)
        if counts["rows_scored"] else None,
    }
