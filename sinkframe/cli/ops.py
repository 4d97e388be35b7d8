"""`sinkframe status`, `sinkframe simulate`, `sinkframe export`: argument parsing only."""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
from pathlib import Path

import click

from sinkframe.cli.errors import exit_on_error
from sinkframe.ops.timespec import parse_duration, parse_instant
from sinkframe.config.settings import Settings, setting_option

TOPIC_ENV = {"raw": "RAW_TOPIC", "enriched": "ENRICHED_TOPIC", "smart_breaker": "SMART_BREAKER_TOPIC"}


class Duration(click.ParamType):
    name = "duration"

    def convert(self, value, param, ctx):
        if isinstance(value, float):
            return value
        try:
            return parse_duration(value)
        except ValueError as err:
            self.fail(str(err), param, ctx)


class Instant(click.ParamType):
    name = "time"

    def convert(self, value, param, ctx):
        try:
            return parse_instant(value)
        except ValueError as err:
            self.fail(str(err), param, ctx)


# -- status -------------------------------------------------------------------------
@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@setting_option("plugins_dirs")
@setting_option("brokers")
@setting_option("database_url")
@setting_option("schema_dir")
@click.option("--lookback", type=Duration(), default="1d", show_default=True,
              help="Count rows ingested in the last minute/hour among those with event time this recent.")
@click.option("--tenant", metavar="NAME",
              help="Rows and schema state of this tenant's tables (schema tenant_NAME); offsets and dead "
                   "letters stay the connector's.")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def status(files, plugins_dirs, brokers, database_url, schema_dir, lookback, tenant, output):
    """Per connector and partition: Kafka high watermark, committed and DB-stored offsets, lag;
    rows ingested recently, dead letters and schema state."""
    from sinkframe.ops.status import collect_status, render_text

    def collect():
        settings = Settings.from_env().with_overrides(brokers=brokers, database_url=database_url,
                                                      schema_dir=schema_dir)
        return collect_status(files, settings, plugins_dirs=plugins_dirs, lookback=lookback, tenant=tenant)

    report = exit_on_error(collect)
    if output == "json":
        click.echo(json.dumps(report.as_dict(), indent=2, default=str))
    else:
        click.echo(render_text(report))
    sys.exit(0 if report.ok else 1)


# -- simulate -----------------------------------------------------------------------
@click.command()
@click.option("--devices", type=click.IntRange(min=1), default=10, show_default=True, help="Fleet size.")
@click.option("--rate", type=click.FloatRange(min=0), default=100.0, show_default=True,
              help="Messages per second over all topics (0: as fast as possible).")
@click.option("--duration", type=Duration(), help="Stop after this long (90s, 10m).")
@click.option("--count", type=click.IntRange(min=0), help="Stop after this many messages.")
@click.option("--backfill", type=Duration(),
              help="Instead of live readings, send readings from this long ago up to now (24h).")
@click.option("--interval", type=Duration(), default="60s", show_default=True,
              help="With --backfill: time between two readings of one device.")
@setting_option("brokers")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same fleet and values.")
@click.option("--kind", "kinds", multiple=True, type=click.Choice(["raw", "enriched", "smart_breaker"]),
              help="Message kinds to send (repeatable; default: all three).")
@click.option("--topic", "topic_overrides", multiple=True, metavar="KIND=TOPIC",
              help="Topic of a kind (default: $RAW_TOPIC, $ENRICHED_TOPIC, $SMART_BREAKER_TOPIC "
                   "or iot.raw, iot.enriched, iot.smart_breaker.enriched).")
@click.option("--malformed-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of messages that are malformed (dead letters).")
@click.option("--late-rate", type=click.FloatRange(0, 1), default=0.01, show_default=True,
              help="Share of readings sent minutes to hours late.")
@click.option("--out-of-order-rate", type=click.FloatRange(0, 1), default=0.01, show_default=True,
              help="Share of readings older than the device's previous one.")
@click.option("--trip-rate", type=click.FloatRange(0, 1), default=0.0005, show_default=True,
              help="Chance per reading that a breaker trips (overloads trip it too).")
@click.option("--sensor-share", type=click.FloatRange(0, 1), default=0.2, show_default=True,
              help="Share of devices that are environment sensors rather than breakers.")
@click.option("--partitions", type=click.IntRange(min=1), default=3, show_default=True,
              help="Partitions of topics this command creates.")
@click.option("--create-topics/--no-create-topics", default=True, show_default=True,
              help="Create missing topics first.")
@click.option("--degrading", type=click.IntRange(min=0), default=0, show_default=True,
              help="Breakers whose contact fails over hours (hotter than their load, phases apart) and ends "
                   "in a thermal trip; needs --backfill or --duration.")
@click.option("--degrading-window", type=Duration(), default="1d", show_default=True,
              help="With --degrading: the trips fall in this last stretch of the run.")
@click.option("--truth", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the ground truth (degrading breakers, onset, trip) to this JSON file.")
def simulate(devices, rate, duration, count, backfill, interval, brokers, seed, kinds, topic_overrides,
             malformed_rate, late_rate, out_of_order_rate, trip_rate, sensor_share, partitions, create_topics,
             degrading, degrading_window, truth):
    """Send realistic fleet telemetry (smart breakers and sensors) to Kafka."""
    from sinkframe.simulator import DEFAULT_TOPICS, KINDS, Fleet, ensure_topics, produce
    from sinkframe.simulator.produce import producer_config

    kafka = dict(exit_on_error(lambda: Settings.from_env().with_overrides(brokers=brokers)).kafka)
    bootstrap = kafka.pop("bootstrap.servers")
    topics = {kind: os.environ.get(TOPIC_ENV[kind]) or DEFAULT_TOPICS[kind] for kind in KINDS}
    for item in topic_overrides:
        kind, sep, name = item.partition("=")
        if not sep or kind not in topics or not name:
            raise click.BadParameter(f"{item!r}: expected KIND=TOPIC with KIND one of {', '.join(KINDS)}",
                                     param_hint="--topic")
        topics[kind] = name
    window = None
    if backfill is not None:
        end = parse_instant("now").timestamp()
        window = (end - backfill, end, interval)
    try:
        fleet = Fleet(devices=devices, seed=seed, kinds=kinds or KINDS, malformed_rate=malformed_rate,
                      late_rate=late_rate, out_of_order_rate=out_of_order_rate, trip_rate=trip_rate,
                      sensor_share=sensor_share, degrading=degrading,
                      degrade_window=_degrade_window(degrading, degrading_window, window, duration))
    except ValueError as err:
        raise click.UsageError(str(err)) from None
    if truth is not None:
        truth.write_text(json.dumps(fleet.truth(), indent=2) + "\n", encoding="utf-8")
        click.echo(f"ground truth: {truth}", err=True)
    config = producer_config(kafka)
    used = sorted({topics[k] for k in fleet.kinds})

    def send():
        if create_topics:
            created = ensure_topics(bootstrap, used, partitions=partitions, config=config)
            if created:
                click.echo(f"created topics: {', '.join(created)}", err=True)
        stop = _stop_on_signals()
        click.echo(f"sending to {', '.join(used)} at {bootstrap}: {devices} devices, "
                   f"{'unlimited' if not rate else f'{rate:g} msg/s'}", err=True)
        return produce(bootstrap, fleet, rate=rate or None, duration=duration, count=count, topics=topics,
                       config=config, backfill=window, stop=stop, on_progress=_print_progress)

    report = exit_on_error(send)
    malformed = sum(n for (_, tag), n in fleet.counts.items() if tag == "malformed")
    click.echo(f"sent {report.sent} messages in {report.seconds:.1f}s ({report.rate:.0f} msg/s), "
               f"delivered {report.delivered}, failed {report.failed}, malformed {malformed}; "
               + ", ".join(f"{t}={n}" for t, n in sorted(report.by_topic.items())), err=True)
    if report.failed:
        click.echo(f"error: {report.first_error}", err=True)
        sys.exit(1)


def _degrade_window(degrading: int, last: float, backfill: tuple | None,
                    duration: float | None) -> tuple[float, float] | None:
    """Where the trips of failing contacts fall: the last `last` seconds of the run."""
    if not degrading:
        return None
    if backfill is not None:
        start, end = backfill[0], backfill[1]
    elif duration is not None:
        start = parse_instant("now").timestamp()
        end = start + duration
    else:
        raise click.UsageError("--degrading needs a run of known length: give --backfill or --duration")
    return max(start, end - last), end


def _print_progress(report) -> None:
    click.echo(f"  {report.sent} sent, {report.rate:.0f} msg/s", err=True)


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
    return stop


# -- export -------------------------------------------------------------------------
@click.command()
@click.argument("relation", metavar="TABLE_OR_AGGREGATE")
@click.option("--since", type=Instant(), default="24h", show_default=True,
              help="Start (inclusive): a duration ago (24h, 7d), `now` or ISO-8601.")
@click.option("--until", type=Instant(), default="now", show_default=True, help="End (exclusive), same forms.")
@click.option("--device", "device_id", help="Only this device_id.")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True,
              help="csv (with a header) or json (one JSON object per line).")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False),
              help="Write to this file (default: stdout).")
@click.option("--time-column", help="Time column to filter on (default: `time`, or `bucket` for aggregates).")
@click.option("--tenant", metavar="NAME", help="Read the table of this tenant (from its schema tenant_NAME).")
@setting_option("database_url")
@click.option("--progress/--no-progress", default=None, help="Progress on stderr (default: when a terminal).")
def export(relation, since, until, device_id, fmt, output, time_column, tenant, database_url, progress):
    """Stream rows of a table or continuous aggregate out with COPY, as CSV or JSON lines."""
    from sinkframe.ops.export import ExportRequest, export_to

    request = ExportRequest(relation=relation, since=since, until=until, device_id=device_id, fmt=fmt,
                            time_column=time_column, tenant=tenant)
    show = sys.stderr.isatty() if progress is None else progress

    def export_rows():
        settings = Settings.from_env().with_overrides(database_url=database_url)
        if output:
            with open(output, "wb") as out:
                return export_to(settings, request, out, progress=show)
        return export_to(settings, request, sys.stdout.buffer, progress=show)

    try:
        result = exit_on_error(export_rows)
    except BrokenPipeError:  # `sinkframe export ... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    source = f"{relation} of tenant {tenant}" if tenant else relation
    click.echo(f"exported {result.rows} rows ({result.bytes} bytes) from {source} "
               f"[{since.isoformat()} .. {until.isoformat()})", err=True)


commands = [status, simulate, export]
