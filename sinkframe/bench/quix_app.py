"""Quix Streams' PostgreSQLSink draining the smart-breaker topic, written as a Python user would.

A Quix Application, a StreamingDataFrame that maps each JSON message to the
table's columns, and `PostgreSQLSink`, all with Quix's defaults (at-least-once,
a checkpoint every 5 s; at each, one transaction per partition of INSERT ...
VALUES statements of 100 rows) except where the benchmark needs otherwise:

- `auto_offset_reset="earliest"`: the backlog is already on the topic (the
  default, "latest", would skip it);
- `session.timeout.ms` as the sink gets it (Tansu delays the first assignment
  by half of it);
- `include_metadata=False`: by default the sink adds `__key` and `timestamp`
  columns to the table, and the comparison needs the table's own columns.

The database password, if any, comes from PGPASSWORD (not the command line).

The benchmark (sinkframe.bench.quix) runs this file as its own process. It
imports nothing from sinkframe, so it runs under any Python that has
`quixstreams[postgresql]`, including one in a separate virtualenv (quixstreams
pins confluent-kafka below the version sinkframe may use).
"""
from __future__ import annotations

import argparse
import logging
import os
from datetime import datetime

FIRST_MESSAGE = "bench: first message"  # logged once; the benchmark times from it
log = logging.getLogger("quixstreams.bench")


def row_mapper(float_columns: list[str]):
    from quixstreams import message_context

    known = frozenset((*float_columns, "breaker_status", "trip_count"))
    first = [True]

    def to_row(message: dict) -> dict:
        if first[0]:
            first[0] = False
            log.info(FIRST_MESSAGE)
        measurements = message["measurements"]
        context = message_context()
        row = {"time": datetime.fromisoformat(message["timestamp"]), "device_id": message["device_id"]}
        for name in float_columns:
            row[name] = measurements.get(name)
        row["breaker_status"] = measurements.get("breaker_status")
        row["trip_count"] = measurements.get("trip_count")
        extra = {k: v for k, v in measurements.items() if k not in known}
        row["extra_measurements"] = extra or None  # the sink leaves out None values
        row["source_topic"] = context.topic
        row["source_partition"] = context.partition
        row["source_offset"] = context.offset
        return row

    return to_row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", default="bench-quix")
    parser.add_argument("--session-timeout-ms", type=int, required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dbname", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--table", required=True)
    parser.add_argument("--float-columns", required=True, help="comma-separated double precision columns")
    args = parser.parse_args()
    # Imported here, not at the top, so that the benchmark can import this file without quixstreams.
    from quixstreams import Application
    from quixstreams.sinks.community.postgresql import PostgreSQLSink

    app = Application(broker_address=args.broker, consumer_group=args.group, auto_offset_reset="earliest",
                      consumer_extra_config={"session.timeout.ms": args.session_timeout_ms},
                      state_dir=args.state_dir)
    sink = PostgreSQLSink(host=args.host, port=args.port, dbname=args.dbname, user=args.user,
                          password=os.environ.get("PGPASSWORD", ""), table_name=args.table, include_metadata=False)
    sdf = app.dataframe(app.topic(args.topic, value_deserializer="json"))
    sdf = sdf.apply(row_mapper(args.float_columns.split(",")))
    sdf.sink(sink)
    app.run()


if __name__ == "__main__":
    main()
