"""`sinkframe validate`: every offline check of connector files, every error reported at once.

A file is checked in the order a run would find its problems: the file itself
(YAML, connector schema, cross-key rules), its plugin and the plugin's config,
its table roles, its models and alert rules against the mapper's columns, then what the
mapper writes against the table specs
(`sinkframe.schema.contract`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from sinkframe.config.connector import ConnectorConfig, load_connector
from sinkframe.errors import ConfigError, PluginLoadError
from sinkframe.mapping.registry import PluginRegistry
from sinkframe.schema.contract import target_problems
from sinkframe.schema.spec import SchemaSpec, load_schema
from sinkframe.config.settings import read_setting


@dataclass
class FileReport:
    path: str
    errors: list[str] = field(default_factory=list)
    summary: str | None = None


def validate_files(paths: Sequence[Path], *, plugins_dirs: Sequence[Path] = (),
                   schema_dir: str | None = None) -> list[FileReport]:
    """`schema_dir`: spec folders/files, ':'-separated (default: SINKFRAME_SCHEMA_DIR)."""
    registry = PluginRegistry(plugins_dirs)
    spec, spec_problem = _load_specs(read_setting("schema_dir") if schema_dir is None else schema_dir)
    reports, names = [], {}
    for path in paths:
        report = FileReport(str(path))
        reports.append(report)
        try:
            connector = load_connector(Path(path))
        except ConfigError as err:
            report.errors.extend(err.problems)
            continue
        if connector.name in names:
            report.errors.append(connector.doc.problem(("name",), f"connector name {connector.name!r} is also "
                                                                  f"used by {names[connector.name]}"))
        names.setdefault(connector.name, str(path))
        problems, targets = _check_connector(connector, registry, spec, spec_problem)
        report.errors.extend(problems)
        if not report.errors:
            report.summary = _summary(connector, targets)
    return reports


def _check_connector(connector: ConnectorConfig, registry: PluginRegistry, spec: SchemaSpec | None,
                     spec_problem: str | None) -> tuple[list[str], dict]:
    """(problems, the connector's targets by role)."""
    from sinkframe.alerts import parse_rules
    from sinkframe.pipeline.runner import build_mapper, resolve_targets

    try:
        mapper = build_mapper(connector, registry)
        targets = resolve_targets(connector, mapper)
    except PluginLoadError as err:
        return [connector.doc.problem(("mapper", "plugin"), str(err))], {}
    except ConfigError as err:
        return err.problems, {}
    from sinkframe.models.spec import parse_models, with_model_columns

    where = lambda path: connector.doc.problem(path, "")  # noqa: E731
    models, problems = parse_models(list(connector.models), mapper.targets, where=where)
    # A model's score is a column its alert rules may use (`when: contact_health > 0.8`).
    _rules, rule_problems = parse_rules(list(connector.alerts), with_model_columns(mapper.targets, models),
                                        where=where)
    problems += rule_problems
    if spec is None:
        problems.append(connector.doc.problem(("tables",), f"cannot check target tables: {spec_problem}"))
        return problems, targets
    return problems + target_problems(connector, targets, spec), targets


def _load_specs(schema_dir: str) -> tuple[SchemaSpec | None, str | None]:
    paths = [p for p in schema_dir.split(os.pathsep) if p]
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        return None, f"schema folder {missing[0]} does not exist"
    try:
        return load_schema(paths), None
    except ConfigError as err:
        return None, "; ".join(err.problems)


def _summary(connector: ConnectorConfig, targets: dict) -> str:
    tables = ", ".join(sorted({t.table for t in targets.values()}))
    return (f"{connector.name}: {connector.topic} -> {connector.plugin} -> {tables} "
            f"(batch {connector.max_rows} rows / {connector.max_wait_ms} ms, "
            f"errors.tolerance {connector.tolerance})")
