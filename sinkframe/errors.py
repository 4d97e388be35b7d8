"""One error hierarchy for sinkframe.

Every error a user can see derives from `SinkframeError` and carries a sentence
the user can act on. Driver errors (psycopg, confluent-kafka) are wrapped with
`raise ... from err` so the original stays visible in tracebacks.
"""
from __future__ import annotations


class SinkframeError(Exception):
    """Base class of every error sinkframe raises on purpose."""


class ConfigError(SinkframeError):
    """A connector, settings or schema file is wrong.

    `problems` holds every problem found (each already naming file and key path),
    so that validation can report all of them at once.
    """

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = problems or [message]


class PluginLoadError(SinkframeError):
    """A mapper plugin could not be found or imported."""


class RecordError(SinkframeError):
    """One Kafka record could not be turned into rows (a poison message).

    `stage` is where it failed: decode, validate, map or write.
    """

    def __init__(self, stage: str, reason: str, *, sqlstate: str | None = None):
        super().__init__(f"{stage}: {reason}")
        self.stage = stage
        self.reason = reason
        self.sqlstate = sqlstate


class WriteError(SinkframeError):
    """Writing a batch to the database failed."""


class RetriableWriteError(WriteError):
    """The database is unreachable or asked us to retry (deadlock, serialization...)."""


class PartitionFenced(WriteError):
    """Another consumer advanced a partition's stored offset since we loaded it.

    The batch was rolled back; this consumer must re-read its position from the
    database. This is what keeps a slow consumer that lost its partitions in a
    rebalance from writing duplicates.
    """

    def __init__(self, topic: str, partition: int):
        super().__init__(
            f"{topic}[{partition}]: stored offset moved under us (another consumer owns this "
            "partition now); batch rolled back"
        )
        self.topic = topic
        self.partition = partition


class SchemaError(SinkframeError):
    """The database schema cannot be provisioned as specified."""


class ConnectorFailed(SinkframeError):
    """A connector stopped because of an error its error policy does not tolerate."""


class ModelError(SinkframeError):
    """A stored model cannot be used: parameters that are not the data a detector reads, or no version."""
