"""sinkframe: a pluggable, exactly-once Kafka -> TimescaleDB sink framework."""

__version__ = "0.1.0"
