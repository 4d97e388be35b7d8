"""The whole benchmark, section by section, into one result document."""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

from sinkframe.bench import database, profile
from sinkframe.bench.ceiling import run_ceiling
from sinkframe.bench.endtoend import run_end_to_end
from sinkframe.bench.latency import run_latency
from sinkframe.bench.machine import load_average, machine_facts
from sinkframe.bench.naive import run_naive
from sinkframe.bench.services import BenchContext
from sinkframe.devservices import local_postgres_dsn
from sinkframe.errors import SinkframeError

CONFIG_NAME = Path("configs") / "smart_breaker.yaml"
SECTIONS = ("machine", "ceiling", "end_to_end", "naive", "latency", "workers", "targets")

TARGETS = {
    "ratio_to_ceiling": 0.60,
    "times_naive": 25.0,
    "latency_p99_ms": 1000.0,
    "peak_rss_mb": 300.0,
}


@dataclass(frozen=True)
class BenchOptions:
    messages: int = 1_000_000
    baseline_messages: int = 20_000
    latency_rate: float = 20_000
    latency_seconds: float = 30
    workers_compare: bool = True
    partitions: int = 4
    ceiling_repeats: int = 3
    profile: bool = False
    quick: bool = False
    output: Path = Path("bench-results/latest.json")
    config: Path = CONFIG_NAME
    database_name: str = database.BENCH_DATABASE

    def quickened(self) -> "BenchOptions":
        """Small enough to check that every section works; the figures mean nothing."""
        return replace(self, quick=True, messages=3_000, baseline_messages=300, latency_rate=1_000,
                       latency_seconds=3, ceiling_repeats=1)


def default_config() -> Path:
    """configs/smart_breaker.yaml of this checkout, else of the current folder."""
    beside = Path(__file__).resolve().parents[2] / CONFIG_NAME
    return beside if beside.exists() else CONFIG_NAME


def admin_dsn() -> str:
    dsn = (os.environ.get("SINKFRAME_BENCH_POSTGRES_DSN") or os.environ.get("SINKFRAME_TEST_POSTGRES_DSN")
           or local_postgres_dsn())
    if not dsn:
        raise SinkframeError("no PostgreSQL server for the benchmark: start the local one or set "
                             "SINKFRAME_BENCH_POSTGRES_DSN (a role that may create databases)")
    return dsn


def run_bench(options: BenchOptions, *, say: Callable[[str], None] = print) -> dict:
    admin = admin_dsn()
    dsn = database.recreate_database(admin, options.database_name)
    database.create_tables(dsn)
    workdir = options.output.parent / "logs"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    ctx = BenchContext(admin, dsn, options.config.resolve(), options.partitions, workdir.resolve(),
                       bootstrap=os.environ.get("SINKFRAME_BENCH_BROKERS") or None)
    results: dict = {"started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                     "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()},
                     "sink_settings_from_environment": caller_settings(),
                     "machine": machine_facts(dsn)}
    if ctx.bootstrap:
        results["machine"]["broker"] = f"given: {ctx.bootstrap}"

    # Other work on the machine can only slow a run down, so the best run is the ceiling.
    say(f"ceiling: {options.messages:,} rows by binary COPY, best of {options.ceiling_repeats}")
    runs = [run_ceiling(dsn, options.messages) for _ in range(options.ceiling_repeats)]
    results["ceiling"] = {**max(runs, key=lambda r: r["rows_per_second"]),
                          "rows_per_second_all_runs": [r["rows_per_second"] for r in runs]}

    say(f"end to end: {options.messages:,} messages through `sinkframe run`")
    e2e = run_end_to_end(ctx, options.messages, profile=options.profile)
    results["end_to_end"] = e2e
    if e2e.get("profile_file") and Path(e2e["profile_file"]).exists():
        results["profile"] = profile.summarize(Path(e2e["profile_file"]))

    say(f"naive baseline: {options.baseline_messages:,} messages, one INSERT and commit each")
    results["naive"] = run_naive(ctx, options.baseline_messages)

    say(f"latency: {options.latency_rate:,.0f} msgs/s for {options.latency_seconds:g} s")
    results["latency"] = run_latency(ctx, options.latency_rate, options.latency_seconds)

    if options.workers_compare:
        say(f"workers: {options.messages:,} messages with 2 workers in one group")
        two = run_end_to_end(ctx, options.messages, workers=2, name="workers_2")
        results["workers"] = workers_comparison(e2e, two)
    else:
        results["workers"] = {"skipped": "--no-workers-compare"}

    results["targets"] = check_targets(results)
    results["machine"]["load_average_at_end"] = load_average()
    results["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return results


def caller_settings() -> dict[str, str]:
    """SINKFRAME_* settings the sink inherits from this shell (they change the figures), minus secrets."""
    secret = ("PASSWORD", "SECRET", "TOKEN", "KEY", "DSN", "DATABASE_URL", "SINKFRAME_DB_", "SINKFRAME_TEST_")
    return {k: v for k, v in sorted(os.environ.items())
            if k.startswith("SINKFRAME_") and not any(s in k for s in secret)
            and not k.startswith("SINKFRAME_BENCH_")}


def _scaling_view(run: dict) -> dict:
    keys = ("mode", "messages", "partitions", "msgs_per_second", "msgs_per_second_first_to_last_commit",
            "assignment_wait_seconds", "seconds_from_assignment", "peak_rss_mb", "peak_rss_mb_per_process",
            "rows_counted", "cpu_seconds")
    return {k: run.get(k) for k in keys}


def workers_comparison(one: dict, two: dict) -> dict:
    return {
        "1": _scaling_view(one),
        "2": _scaling_view(two),
        "speedup": round(two["msgs_per_second"] / one["msgs_per_second"], 2),
        "speedup_first_to_last_commit": round(two["msgs_per_second_first_to_last_commit"]
                                              / one["msgs_per_second_first_to_last_commit"], 2)
        if two.get("msgs_per_second_first_to_last_commit") and one.get("msgs_per_second_first_to_last_commit")
        else None,
    }


def check_targets(results: dict) -> list[dict]:
    e2e, ceiling = results["end_to_end"], results["ceiling"]
    measured = {
        "ratio_to_ceiling": round(e2e["msgs_per_second"] / ceiling["rows_per_second"], 3),
        "times_naive": round(e2e["msgs_per_second"] / results["naive"]["msgs_per_second"], 1),
        "latency_p99_ms": results["latency"]["visible"].get("p99_ms"),
        "peak_rss_mb": e2e["peak_rss_mb"],
    }
    checks = []
    for name, goal in TARGETS.items():
        value = measured[name]
        at_least = name in ("ratio_to_ceiling", "times_naive")
        met = value is not None and (value >= goal if at_least else value < goal)
        checks.append({"target": name, "goal": (">= " if at_least else "< ") + f"{goal:g}",
                       "measured": value, "met": met})
    return checks
