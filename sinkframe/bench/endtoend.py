"""sinkframe end to end: drain N messages already on the broker with `sinkframe run`.

The messages are produced first; then the clock starts with the `sinkframe run`
child process and stops at the first look at the database that finds every
partition's stored offset at the end of the topic. Offsets are committed in the
same transaction as the rows, so that moment is when the last row became
visible; the row count is checked afterwards. Tansu's first group assignment
waits about half the session timeout, which real Kafka does not, so the
assignment wait is reported apart and the headline rate is measured from it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import psycopg

from sinkframe.bench import database, procstats, services
from sinkframe.bench.services import BenchContext
from sinkframe.bench.sinkproc import SinkProcess, cli_supports_workers
from sinkframe.bench.workload import TOPIC_PREFIX, create_topic, encoded, produce_all
from sinkframe.devservices import free_port
from sinkframe.errors import SinkframeError

POLL_SECONDS = 0.02


@dataclass
class Drain:
    """Times (perf_counter) seen while watching the database."""

    started_at: float
    first_commit_at: float | None = None
    committed_at_first: int = 0
    done_at: float | None = None
    thread_cpu: dict[str, float] = field(default_factory=dict)


def unique_topic(name: str) -> str:
    return f"{TOPIC_PREFIX}.{name}.{int(time.time() * 1000)}"


def start_sinks(ctx: BenchContext, bootstrap: str, topic: str, *, workers: int, name: str,
                profile: bool = False) -> tuple[list[SinkProcess], str]:
    """`workers` consumers in one group: `--workers N` when the CLI has it, else N processes."""
    env = services.sink_env(ctx, bootstrap, topic)
    profile_path = ctx.workdir / f"{name}-profile.txt" if profile else None
    if workers == 1:  # with /metrics, for the fast-path fallbacks
        return [SinkProcess(ctx.config, env=env, log_path=ctx.log_path(name), profile_path=profile_path,
                            metrics_port=free_port()).start()], "1 process"
    if cli_supports_workers():
        return [SinkProcess(ctx.config, env=env, log_path=ctx.log_path(name), workers=workers).start()], \
            f"sinkframe run --workers {workers}"
    return [SinkProcess(ctx.config, env=env, log_path=ctx.log_path(f"{name}-{i}")).start()
            for i in range(workers)], f"{workers} sinkframe run processes, one consumer group"


def watch_until_committed(dsn: str, topic: str, end_offsets: dict[int, int], sinks: list[SinkProcess],
                          *, started_at: float, timeout: float) -> Drain:
    drain = Drain(started_at)
    with psycopg.connect(dsn, autocommit=True) as conn:
        while True:
            now = time.perf_counter()
            stored = database.stored_offsets(conn, topic)
            for sink in sinks:
                sink.sample_memory()
            committed = sum(min(stored.get(p, 0), end) for p, end in end_offsets.items())
            if committed and drain.first_commit_at is None:
                drain.first_commit_at, drain.committed_at_first = now, committed
            if all(stored.get(p, 0) >= end for p, end in end_offsets.items()):
                drain.done_at = now
                for sink in sinks:
                    for thread, seconds in sink.thread_cpu().items():
                        drain.thread_cpu[thread] = round(drain.thread_cpu.get(thread, 0.0) + seconds, 2)
                return drain
            exited = [s for s in sinks if s.proc.poll() is not None]
            if exited:
                raise SinkframeError(f"sinkframe run exited ({exited[0].proc.returncode}) with "
                                     f"{committed} of {sum(end_offsets.values())} messages committed; "
                                     f"see {exited[0].log_path}")
            if now - started_at > timeout:
                raise SinkframeError(f"timed out after {timeout:.0f}s with {committed} of "
                                     f"{sum(end_offsets.values())} messages committed; see the sink log")
            time.sleep(POLL_SECONDS)


def run_end_to_end(ctx: BenchContext, messages: int, *, workers: int = 1, profile: bool = False,
                   name: str = "end_to_end", values: Callable[[int], bytes] = encoded) -> dict:
    """`values(i)`: message i's bytes (the workload's by default)."""
    topic = unique_topic(name)
    with services.broker(ctx, name) as bootstrap:
        create_topic(bootstrap, topic, ctx.partitions)
        produced = produce_all(bootstrap, topic, messages, values=values)
        database.reset_tables(ctx.dsn, ctx.tables)
        postgres_cpu = procstats.CpuMeter(lambda: services.postgres_pids(ctx.dsn)).start()
        broker_cpu = procstats.CpuMeter(services.broker_pids).start()
        started = time.perf_counter()
        sinks, mode = start_sinks(ctx, bootstrap, topic, workers=workers, name=name, profile=profile)
        try:
            drain = watch_until_committed(ctx.dsn, topic, produced.end_offsets, sinks, started_at=started,
                                          timeout=max(120.0, messages / 2_000))
            cpu = {"sink_threads": drain.thread_cpu, "postgres": postgres_cpu.stop(), "broker": broker_cpu.stop()}
            fallbacks = sinks[0].fast_path_fallbacks() if len(sinks) == 1 else None  # before it exits, idle
            exit_codes = [sink.stop() for sink in sinks]
        finally:
            for sink in sinks:
                sink.kill()
    return summarize(ctx, produced.messages, produced.seconds, sinks, drain, cpu, exit_codes, workers, mode,
                     fallbacks)


def summarize(ctx: BenchContext, messages: int, produce_seconds: float, sinks: list[SinkProcess], drain: Drain,
              cpu: dict, exit_codes: list[int], workers: int, mode: str,
              fallbacks: dict[str, int] | None = None) -> dict:
    assigned = min((t for s in sinks for t in s.assigned_at), default=drain.started_at)
    working = drain.done_at - assigned
    first_to_last = drain.done_at - drain.first_commit_at
    peaks = sorted(sinks_peaks(sinks), reverse=True)
    cpu["sink"] = round(sum(cpu["sink_threads"].values()), 2)
    cpu["wall_seconds_from_assignment"] = round(working, 3)
    return {
        "messages": messages,
        "partitions": ctx.partitions,
        "workers": workers,
        "mode": mode,
        "produce_seconds_not_timed": round(produce_seconds, 3),
        "seconds_total": round(drain.done_at - drain.started_at, 3),
        "assignment_wait_seconds": round(assigned - drain.started_at, 3),
        "seconds_from_assignment": round(working, 3),
        "seconds_first_to_last_commit": round(first_to_last, 3),
        "msgs_per_second": round(messages / working),
        "msgs_per_second_from_start": round(messages / (drain.done_at - drain.started_at)),
        "msgs_per_second_first_to_last_commit":
            round((messages - drain.committed_at_first) / first_to_last) if first_to_last > 0 else None,
        "rows_counted": database.count_rows(ctx.dsn, ctx.tables.data),
        "rows_with_distinct_source": database.count_distinct_sources(ctx.dsn, ctx.tables.data),
        "device_metadata_rows": database.count_rows(ctx.dsn, ctx.tables.metadata),
        "dead_letters": database.count_rows(ctx.dsn, ctx.tables.dead_letters),
        # Records the mappers' fast paths left to the per-record path, by reason (None: not read).
        "fast_path_fallbacks": fallbacks,
        "peak_rss_mb": round(peaks[0] / 1024, 1) if peaks else None,
        "peak_rss_mb_per_process": [round(p / 1024, 1) for p in peaks],
        "cpu_seconds": cpu,
        "exit_codes": exit_codes,
        "log": [str(s.log_path) for s in sinks],
        "profile_file": str(sinks[0].profile_path) if sinks[0].profile_path else None,
    }


def sinks_peaks(sinks: list[SinkProcess]) -> list[int]:
    return [peak for sink in sinks for peak in sink.peak_rss_kib.values()]
