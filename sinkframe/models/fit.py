"""`sinkframe models fit`: read each model's history with COPY, fit it, store a new version.

A running sink notices the new version at its next batch (`recorder.ModelScorer`).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import psycopg

from sinkframe.config.connector import ConnectorConfig
from sinkframe.config.settings import Settings, redact_error
from sinkframe.errors import ConfigError, ModelError, SinkframeError
from sinkframe.mapping.registry import PluginRegistry
from sinkframe.models import detector, store
from sinkframe.models.history import read_rows
from sinkframe.models.params import detector_to_json
from sinkframe.models.spec import ModelSpec, parse_models
from sinkframe.pipeline.write.writer import ResolvedTarget

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BoundModel:
    """A connector's model and the table its rows are read from."""

    connector: str
    spec: ModelSpec
    target: ResolvedTarget


@dataclass(frozen=True)
class FitResult:
    connector: str
    model: str
    version: int
    rows: int
    seconds: float
    metrics: dict


def bound_models(connectors: Sequence[ConnectorConfig], registry: PluginRegistry) -> list[BoundModel]:
    """Every model of the connectors with its table; ConfigError listing every problem."""
    from sinkframe.pipeline.runner import build_mapper, resolve_targets

    found, problems = [], []
    for connector in connectors:
        mapper = build_mapper(connector, registry)
        targets = resolve_targets(connector, mapper)
        specs, wrong = parse_models(list(connector.models), mapper.targets,
                                    where=lambda path, c=connector: c.doc.problem(path, ""))
        problems.extend(wrong)
        found.extend(BoundModel(connector.name, spec, targets[spec.role]) for spec in specs)
    if problems:
        raise ConfigError(problems[0], problems)
    return found


def connect(settings: Settings, application: str) -> psycopg.Connection:
    try:
        return psycopg.connect(settings.dsn, connect_timeout=10, application_name=application)
    except psycopg.Error as err:
        raise SinkframeError(f"cannot connect to the database ({settings.redacted_dsn}): "
                             f"{redact_error(err, settings.dsn)}") from None


def fit_models(paths: Sequence[Path], settings: Settings, *, since: float, until: datetime | None = None,
               plugins_dirs: Sequence[Path] = ()) -> list[FitResult]:
    """Fit every model of the connector files on the last `since` seconds of history (up to `until`)."""
    from sinkframe.pipeline.runner import load_connectors

    models = bound_models(load_connectors(paths), PluginRegistry(plugins_dirs))
    if not models:
        raise ConfigError("no model in the given connector files (add a `models:` block; see docs/models.md)")
    end = until or datetime.now(timezone.utc)
    start = datetime.fromtimestamp(end.timestamp() - since, timezone.utc)
    results = []
    with connect(settings, "sinkframe-models-fit") as conn:
        conn.autocommit = True
        store.create_model_tables(conn)
        for model in models:
            results.append(fit_one(conn, model, start, end))
    return results


def fit_one(conn, model: BoundModel, start: datetime, end: datetime) -> FitResult:
    began = time.monotonic()
    try:
        rows = read_rows(conn, model.target.identifier, model.spec, since=start, until=end)
    except psycopg.Error as err:
        raise SinkframeError(f"connector {model.connector}: model {model.spec.name}: reading "
                             f"{model.target.qualified_name}: {err}") from err
    if not len(rows):
        raise ModelError(f"connector {model.connector}: model {model.spec.name}: no rows in "
                         f"{model.target.qualified_name} between {start.isoformat()} and {end.isoformat()}")
    fitted, metrics = detector.fit(rows)
    if not fitted.baselines:
        raise ModelError(f"connector {model.connector}: model {model.spec.name}: no key has "
                         f"{detector.MIN_ROWS} usable rows in that range; fit on a longer history")
    metrics = {**metrics, "features": list(model.spec.features), "key": model.spec.key,
               "table": model.target.qualified_name}
    first, last = float(rows.times.min()), float(rows.times.max())
    version = store.save_version(
        conn, model.connector, model.spec.name, trained_from=datetime.fromtimestamp(first, timezone.utc),
        trained_until=datetime.fromtimestamp(last, timezone.utc), metrics=metrics,
        parameters=detector_to_json(fitted))
    seconds = time.monotonic() - began
    log.info("connector %s: model %s: version %d fitted on %d rows of %d keys in %.1f s (threshold %.3f)",
             model.connector, model.spec.name, version, len(rows), metrics["keys_fitted"], seconds,
             fitted.threshold)
    return FitResult(model.connector, model.spec.name, version, len(rows), seconds, metrics)
