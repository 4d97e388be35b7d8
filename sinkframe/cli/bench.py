"""`sinkframe bench`: parse options, run the suite, write JSON, print the table."""
from __future__ import annotations

import json
from pathlib import Path

import click

from sinkframe.cli.errors import exit_on_error


@click.command()
@click.option("--messages", type=click.IntRange(min=1), default=1_000_000, show_default=True,
              help="Messages for the ceiling, end-to-end, Quix and workers runs.")
@click.option("--baseline-messages", type=click.IntRange(min=1), default=20_000, show_default=True,
              help="Messages for the naive baseline (it is slow).")
@click.option("--latency-rate", type=click.FloatRange(min=1), default=20_000, show_default=True,
              help="Offered load of the latency run, messages per second.")
@click.option("--latency-seconds", type=click.FloatRange(min=1), default=30, show_default=True,
              help="Duration of the latency run.")
@click.option("--workers-compare/--no-workers-compare", default=True, show_default=True,
              help="Also drain the messages with 2 workers in one consumer group.")
@click.option("--quix/--no-quix", default=True, show_default=True,
              help="Also drain the messages with Quix Streams' PostgreSQLSink (needs quixstreams[postgresql], "
                   "or $SINKFRAME_BENCH_QUIX_PYTHON; skipped with the reason otherwise).")
@click.option("--scoring/--no-scoring", default=True, show_default=True,
              help="Also drain the messages (their times spread over hours) with the contact_health model "
                   "scoring them, after fitting it on a run without; --quick raises its N to what a fit needs.")
@click.option("--timescaledb/--no-timescaledb", default=True, show_default=True,
              help="Also run every section on TimescaleDB hypertables ($SINKFRAME_BENCH_TIMESCALE_DSN, else the "
                   "server the tests use: ../shared/timescaledb/start; skipped with the reason without one).")
@click.option("--partitions", type=click.IntRange(min=1), default=4, show_default=True,
              help="Partitions of the benchmark topics.")
@click.option("--profile", is_flag=True, help="Sample the end-to-end sink with py-spy (if installed).")
@click.option("--quick", is_flag=True, help="Tiny N: checks that every section works; figures mean nothing.")
@click.option("--config", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="Connector file to run (default: configs/smart_breaker.yaml).")
@click.option("--output", type=click.Path(path_type=Path, dir_okay=False), default="bench-results/latest.json",
              show_default=True, help="Where to write the results (logs go beside it, in logs/).")
@click.option("--database-name", default="sinkframe_bench", show_default=True,
              help="Database to drop and create for the run (on $SINKFRAME_BENCH_POSTGRES_DSN's server).")
def bench(messages, baseline_messages, latency_rate, latency_seconds, workers_compare, quix, scoring, timescaledb,
          partitions, profile, quick, config, output, database_name):
    """Benchmark sinkframe against the bare-COPY ceiling, Quix Streams and a naive connector."""
    from sinkframe.bench.report import render
    from sinkframe.bench.suite import BenchOptions, default_config, run_bench

    options = BenchOptions(messages=messages, baseline_messages=baseline_messages, latency_rate=latency_rate,
                           latency_seconds=latency_seconds, workers_compare=workers_compare, quix=quix, scoring=scoring,
                           timescaledb=timescaledb, partitions=partitions, profile=profile, output=output,
                           config=config or default_config(), database_name=database_name)
    if quick:
        options = options.quickened()

    results = exit_on_error(lambda: run_bench(options, say=lambda text: click.echo(text, err=True)))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    click.echo(render(results))
    click.echo(f"\nwritten: {output}")


commands = [bench]
