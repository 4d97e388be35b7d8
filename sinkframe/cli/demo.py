"""`sinkframe demo`: the whole platform on one machine, nothing to set up.

Starts a local Kafka-compatible broker (Tansu) and an embedded TimescaleDB
(PGlite + TimescaleDB in Node.js), produces a day of simulated fleet traffic for
the three topics, runs the shipped connectors until they are idle, refreshes the
continuous aggregates and prints what landed, using the seed's example queries.
With `--degrading N` the `--hours` of history are followed by a day that the
smart-breaker connector scores with a model fitted on the history
(cli/demo_models.py, docs/models.md).
"""
from __future__ import annotations

import logging
import math
import os
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import click
from psycopg import sql

from sinkframe.config.settings import Settings
from sinkframe.devservices import TansuBroker, TimescaleEngine, connect_to_engine, create_topics
from sinkframe.errors import SinkframeError
from sinkframe.pipeline.runner import run_connectors
from sinkframe.simulator import DEFAULT_TOPICS, Fleet, produce

log = logging.getLogger(__name__)

CONFIGS = ("configs/raw.yaml", "configs/enriched.yaml", "configs/smart_breaker.yaml")
TABLES = ("iot_raw_data", "iot_enriched_data", "smart_breaker_data", "device_metadata", "sinkframe_dead_letters")
SEED_QUERIES = {
    "hourly average voltage, last 24 h (smart_breaker_data)":
        "SELECT time_bucket('1 hour', time) as bucket, AVG(voltage_phase_a) as avg_voltage FROM smart_breaker_data "
        "WHERE time > NOW() - INTERVAL '24 hours' GROUP BY bucket ORDER BY bucket;",
    "daily stats, last 7 days (smart_breaker_daily_stats)":
        "SELECT * FROM smart_breaker_daily_stats WHERE bucket > NOW() - INTERVAL '7 days';",
}


@click.command()
@click.option("--devices", default=20, show_default=True, help="Simulated devices.")
@click.option("--hours", default=24.0, show_default=True, help="Hours of history to generate.")
@click.option("--interval", default=300.0, show_default=True, help="Seconds between a device's readings.")
@click.option("--malformed-rate", default=0.002, show_default=True, help="Share of malformed messages.")
@click.option("--database-url", help="Use this database instead of the embedded TimescaleDB engine.")
@click.option("--seed", default=7, show_default=True)
@click.option("--degrading", default=0, show_default=True,
              help="Breakers whose contact fails in a day that follows the history: a model fitted on the "
                   "history scores that day and alarms (docs/models.md).")
@click.option("-v", "--verbose", is_flag=True, help="Show the sink's log (one line per dead letter, etc.).")
@click.option("--end", type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S"]), hidden=True,
              help="End the simulated traffic at this time (UTC without an offset) instead of now: "
                   "pins the demo's clock for the tests.")
def demo(devices, hours, interval, malformed_rate, database_url, seed, degrading, verbose, end):
    """Run the whole pipeline locally on simulated traffic and print what landed."""
    quieted = logging.getLogger("sinkframe")
    level = quieted.level
    if not verbose:  # the summary reports dead letters; one log line each would bury it
        quieted.setLevel(logging.ERROR)
    try:
        run_demo(devices=devices, hours=hours, interval=interval, malformed_rate=malformed_rate,
                 database_url=database_url, seed=seed, degrading=degrading,
                 end=None if end is None else _epoch(end))
    except SinkframeError as err:
        raise click.ClickException(str(err)) from None
    finally:
        quieted.setLevel(level)  # the demo also runs inside other programs (the tests): leave logging as it was


def run_demo(*, devices: int, hours: float, interval: float, malformed_rate: float,
             database_url: str | None, seed: int, degrading: int = 0, end: float | None = None) -> None:
    """`end`: epoch seconds the simulated traffic ends at (default: now)."""
    workdir = Path(tempfile.mkdtemp(prefix="sinkframe-demo-"))
    click.echo(f"sinkframe demo: logs in {workdir}")
    with TansuBroker(log_path=workdir / "broker.log") as broker:
        engine = None if database_url else TimescaleEngine(log_path=workdir / "timescaledb.log").start()
        try:
            dsn = database_url or engine.dsn
            click.echo(f"  broker      Tansu on {broker.bootstrap}")
            click.echo(f"  database    {'embedded TimescaleDB on port ' + str(engine.port) if engine else 'given URL'}")
            create_topics(broker.bootstrap, DEFAULT_TOPICS.values(), partitions=3)
            # Readings on whole multiples of the interval: where the simulated days fall in the daily load
            # cycle, which the scores depend on, is then one of a day's intervals, the same ones every day.
            end = math.floor((time.time() if end is None else end) / interval) * interval
            settings = _demo_settings(broker.bootstrap, dsn, embedded=engine is not None)
            if degrading:
                from sinkframe.cli.demo_models import run_scored_demo

                run_scored_demo(broker.bootstrap, dsn, settings, workdir, devices=devices, seed=seed,
                                malformed_rate=malformed_rate, history_hours=hours, end=end, interval=interval,
                                degrading=degrading, configs=CONFIGS)
                _print_summary(dsn)
                return
            fleet = Fleet(devices=devices, seed=seed, malformed_rate=malformed_rate)
            report = produce(broker.bootstrap, fleet, rate=None, backfill=(end - hours * 3600, end, interval))
            click.echo(f"  produced    {report.sent} messages ({dict(report.by_topic)}) in {report.seconds:.1f}s")
            started = time.monotonic()
            pipeline = run_connectors([Path(c) for c in CONFIGS], settings, idle_exit=3.0)
            consumed = sum(t.stats.messages for t in pipeline.tasks)
            click.echo(f"  ingested    {consumed} messages in {time.monotonic() - started:.1f}s "
                       "(including ~1 s group join and 3 s idle wait)")
            _print_summary(dsn)
        finally:
            if engine:
                engine.stop()


def _epoch(moment: datetime) -> float:
    """Epoch seconds of `moment`, read as UTC when it has no offset."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def _demo_settings(bootstrap: str, dsn: str, *, embedded: bool) -> Settings:
    env = {**os.environ, "REDPANDA_BROKERS": bootstrap, "SINKFRAME_DATABASE_URL": dsn,
           "SINKFRAME_KAFKA_SESSION_TIMEOUT_MS": "2000", "SINKFRAME_KAFKA_HEARTBEAT_INTERVAL_MS": "500"}
    for name in ("RAW_TOPIC", "ENRICHED_TOPIC", "SMART_BREAKER_TOPIC"):
        os.environ.pop(name, None)  # the demo produces to the default topics
    if embedded:
        # The embedded engine serves one connection at a time and has no COPY FROM STDIN.
        # Its connections share one session, so prepared statements would outlive them.
        env.update({"SINKFRAME_DB_POOL_SIZE": "1", "SINKFRAME_WRITE_METHOD": "insert",
                    "SINKFRAME_DB_PREPARE_THRESHOLD": "off"})
    return Settings.from_env(env)


def _print_summary(dsn: str) -> None:
    with connect_to_engine(dsn) as conn:  # retries: the sink's pool has just let go of it
        click.echo("\nRows landed:")
        for table in TABLES:
            (count,) = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
            click.echo(f"  {table:<26} {count:>8}")
        for view in ("smart_breaker_hourly_stats", "smart_breaker_daily_stats"):
            conn.execute(sql.SQL("CALL refresh_continuous_aggregate({}, NULL, NULL)").format(sql.Literal(view)))
        reasons = conn.execute("SELECT stage, left(error_message, 70), count(*) FROM sinkframe_dead_letters "
                               "GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 3").fetchall()
        if reasons:
            click.echo("\nDead letters (malformed messages, kept with their reason):")
            for stage, message, count in reasons:
                click.echo(f"  {count:>5} x {stage}: {message}")
        for title, query in SEED_QUERIES.items():
            cur = conn.execute(query)
            rows = cur.fetchall()
            click.echo(f"\n{title}: {len(rows)} rows")
            names = [d.name for d in cur.description][:6]
            click.echo("  " + " | ".join(names))
            for row in rows[:5]:
                click.echo("  " + " | ".join(_short(v) for v in row[:6]))


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)[:25]


commands = [demo]
