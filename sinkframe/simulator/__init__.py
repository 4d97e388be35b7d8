"""A simulated device fleet: realistic telemetry for demos, tests and load tests.

- `Fleet` (pure, no I/O): devices with state; `fleet.messages(now)` yields one
  reading per device as `Message(kind, key, value)` tuples, for the three message
  kinds the built-in connectors read ("raw", "enriched", "smart_breaker").
- `produce(bootstrap, fleet, rate=..., duration=... | count=...)`: sends them to
  Kafka at a steady rate.
"""
from sinkframe.simulator.fleet import DEFAULT_TOPICS, KINDS, Fleet, Message
from sinkframe.simulator.produce import ProduceReport, ensure_topics, produce

__all__ = ["DEFAULT_TOPICS", "KINDS", "Fleet", "Message", "ProduceReport", "ensure_topics", "produce"]
