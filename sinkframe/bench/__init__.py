"""`sinkframe bench`: how close sinkframe gets to what the database can take, on this machine.

Tables are made by the schema module from `schema/` (database), as users make them.
Sections, each in its own module:
- ceiling: rows built in memory, binary COPY into the same table, the sink's batch size per
  transaction (no Kafka, no decoding); and, secondary, into a table without indexes
- endtoend: N messages on the broker, drained by `sinkframe run` as a child process
- quix: the same backlog drained by Quix Streams' PostgreSQLSink (quix_app.py, a child process)
- naive: one message at a time, `json`, one INSERT and one commit per message
- latency: a fixed offered load while the sink runs; committed time minus produce time
- workers 1 vs 2: the end-to-end run again with two consumers in one group
The results go to a JSON file and a table (see docs/benchmark.md).
"""
from sinkframe.bench.suite import BenchOptions, run_bench

__all__ = ["BenchOptions", "run_bench"]
