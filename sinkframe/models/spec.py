"""Models from a connector's `models:` list, checked against the mapper's columns like alert rules.

```yaml
models:
  - name: contact_health      # the score's column name for alert rules, and the model's name
    features: [temperature, current_phase_a, current_phase_b, current_phase_c]
    key: device_id            # one baseline and one smoothing per key
    table: measurements       # the mapper role whose rows are scored (default: the first)
```

The first feature is the one explained (the response: temperature), the others
explain it (the loads: phase currents); see `detector`. The shape of each entry
is checked by the connector's JSON Schema (config/connector.py, `models`); here every entry
is checked against the mapper's `Target` columns: unknown columns, columns that
are not numbers, a key that cannot identify a state, a name already taken by a
column of the table (it becomes a column for alert rules). Problems come out in
the `file:line::$.models[i].key: message` form of `sinkframe validate`.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping, Sequence

from sinkframe.alerts.rules import DEFAULT_KEY, TIME_COLUMN, column_kind
from sinkframe.mapping.base import Column, Target

SCORE_TYPE = "double precision"  # what a model column is to alert rules

# The contact-health model and a rule on its score, as appended to configs/smart_breaker.yaml (whose
# comments document the same) by `sinkframe demo --degrading N`, and for the benchmark's "scoring on".
SMART_BREAKER_MODELS = """
models:
  - name: contact_health
    features: [temperature, current_phase_a, current_phase_b, current_phase_c]
    key: device_id
alerts:
  - name: contact_failing
    when: contact_health > 0.8
    severity: critical
"""

@dataclass(frozen=True)
class ModelSpec:
    name: str
    role: str
    features: tuple[str, ...]
    key: str = DEFAULT_KEY
    time_column: str | None = TIME_COLUMN  # None: the role has no time column (no time-of-day term)


def parse_models(raw: Any, targets: Mapping[str, Target],
                 where: Callable[[tuple], str]) -> tuple[list[ModelSpec], list[str]]:
    """The models of a connector's `models:` list (its shape already checked), and every problem found."""
    if not raw:
        return [], []
    models, problems, seen = [], [], {}
    for index, item in enumerate(raw):
        path = ("models", index)
        found = _item_problems(item, targets, path, where)
        name = item.get("name")
        if name in seen:
            found.append(where(path + ("name",)) + f"duplicate model name {name!r} (first at models[{seen[name]}])")
        seen.setdefault(name, index)
        problems.extend(found)
        if not found:
            role = item.get("table", next(iter(targets)))
            columns = targets[role].column_names
            models.append(ModelSpec(name, role, tuple(item["features"]), item.get("key", DEFAULT_KEY),
                                    TIME_COLUMN if TIME_COLUMN in columns else None))
    return models, problems


def _item_problems(item: Mapping[str, Any], targets: Mapping[str, Target], path: tuple,
                   where: Callable[[tuple], str]) -> list[str]:
    if not targets:
        return [where(path) + "the mapper has no tables to score"]
    role = item.get("table", next(iter(targets)))
    if role not in targets:
        return [where(path + ("table",)) + f"unknown table (mapper role) {role!r}{_hint(str(role), targets)}; "
                f"known: {', '.join(targets)}"]
    pg_types = {c.name: c.pg_type for c in targets[role].columns}
    problems = []
    for position, feature in enumerate(item["features"]):
        at = where(path + ("features", position))
        if feature not in pg_types:
            problems.append(at + f"unknown column {feature!r}{_hint(feature, pg_types)}; "
                                 f"known columns: {', '.join(pg_types)}")
        elif column_kind(pg_types[feature]) != "number":
            problems.append(at + f"column {feature} is {pg_types[feature]}: a feature must be a number")
    if len(set(item["features"])) != len(item["features"]):
        problems.append(where(path + ("features",)) + "a column is listed twice")
    key = item.get("key", DEFAULT_KEY)
    if key not in pg_types:
        problems.append(where(path + ("key",)) + f"unknown key column {key!r}{_hint(key, pg_types)}; "
                                                 f"known columns: {', '.join(pg_types)}")
    elif column_kind(pg_types[key]) in ("json", "other"):
        problems.append(where(path + ("key",)) + f"key column {key} is {pg_types[key]}: it cannot identify a state")
    if item["name"] in pg_types:
        problems.append(where(path + ("name",)) + f"table {role} already has a column {item['name']!r}; the "
                                                  "model's score is a column for alert rules: choose another name")
    return problems


def with_model_columns(targets: Mapping[str, Target], models: Sequence[ModelSpec]) -> dict[str, Target]:
    """The mapper's targets with each model's score as one more number column of its role (for alert rules)."""
    extended = dict(targets)
    for model in models:
        target = extended[model.role]
        extended[model.role] = replace(target, columns=(*target.columns, Column(model.name, SCORE_TYPE)))
    return extended


def _hint(name: str, known: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
