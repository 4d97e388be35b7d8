"""Mapper plugins: the pure part of the pipeline (decoded record -> rows)."""
from sinkframe.mapping.base import Column, KafkaRecord, Mapper, MappedRow, Target, Upsert

__all__ = ["Column", "KafkaRecord", "Mapper", "MappedRow", "Target", "Upsert"]
