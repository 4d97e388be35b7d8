"""The moving part: broker -> consumer -> decode -> mapper -> batch -> writer -> commit.

- `decode`: message bytes -> JSON object (orjson), or a decode-stage RecordError.
- `batch`: rows per target and the Kafka positions they came from.
- `writer`: one database transaction per batch holding the rows AND the offsets.
- `offsets`: the offsets table, with a compare-and-set that fences stale consumers.
- `task`: one consumer thread per connector: poll, map, batch, flush, commit.
- `runner`: builds connectors from config and runs their tasks until stopped.
"""
