"""Declarative TimescaleDB schema: specs in, an ordered idempotent plan out, applied on demand.

    spec = load_schema("schema")                 # YAML files -> SchemaSpec (ConfigError on problems)
    plan = plan_schema(conn, spec)               # what would change, plus drift findings
    print(plan.as_text(conn))
    apply_schema(conn, spec)                     # run it; a second apply does nothing

See docs/schema.md for the spec format.
"""
from sinkframe.schema.apply import apply_schema
from sinkframe.schema.planner import Drift, Plan, Step, plan_schema
from sinkframe.schema.spec import SchemaSpec, load_schema

__all__ = ["Drift", "Plan", "SchemaSpec", "Step", "apply_schema", "load_schema", "plan_schema"]
