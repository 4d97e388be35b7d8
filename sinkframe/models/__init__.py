"""Predictive maintenance: models that learn each key's normal behaviour and score the stream exactly once (issue 18).

- spec      ModelSpec, parsed and checked from a connector's `models:` list against the mapper's columns
- detector  the contact-health detector: fit on history, vectorised scoring with per-key state (pure numpy)
- params    a detector's parameters as JSON data and back, refusing anything that is not that data
- evaluate  alarms against a simulated run's ground truth (pure)
"""
from sinkframe.models.spec import ModelSpec, parse_models, with_model_columns

__all__ = ["ModelSpec", "parse_models", "with_model_columns"]
