"""Threshold alerts evaluated on the stream, recorded exactly once (issue 11).

- rules   AlertRule and Condition, parsed and checked from a connector's `alerts:` list
- engine  the per-(rule, key) state machine over a batch's rows (pure)
- store   the `sinkframe_alerts` and `sinkframe_alert_states` tables, written in the batch's transaction
"""
from sinkframe.alerts.engine import AlertState, AlertStatus, Change, Transition, evaluate, keys_of
from sinkframe.alerts.rules import AlertRule, Condition, parse_rules

__all__ = ["AlertRule", "AlertState", "AlertStatus", "Change", "Condition", "Transition", "evaluate",
           "keys_of", "parse_rules"]
