"""The moving part. A message goes one way, and the folders follow it:

    consume/     read_records, unstored: a consume() call's messages as raw columns, less what
                 the database holds; PartitionPositions, LogEndCheck: which partitions may be read
    ../mapping/  decode and map: the mapper plugin contract (RecordBatch -> MappedBatch)
    route.py     TenantRouter: rows under tenant role keys (connectors with a `tenant:` block)
    batch.py     BatchBuilder runs the stages above per consume() call; Batch: what one write commits
    write/       WriteStage (the writer thread), BatchWriter (encode and write rows, dead letters and
                 offsets in one transaction), the offsets table, dead-letter destinations

`task.py` (ConnectorTask) drives them on one consumer thread per connector; `runner.py` builds
connectors from their files and runs them; `workers.py` runs several processes in one group.
"""
