"""`sinkframe validate`: every offline check of connector files, every error reported at once."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from sinkframe.config.connector import ConnectorConfig, load_connector
from sinkframe.errors import ConfigError, PluginLoadError
from sinkframe.mapping.registry import PluginRegistry


@dataclass
class FileReport:
    path: str
    errors: list[str] = field(default_factory=list)
    summary: str | None = None


def validate_files(paths: Sequence[Path], *, plugins_dirs: Sequence[Path] = (),
                   schema_dir: str | None = None) -> list[FileReport]:
    from sinkframe.pipeline.runner import build_mapper, resolve_targets

    registry = PluginRegistry(plugins_dirs)
    declared_tables, schema_problem = _declared_tables(schema_dir or os.environ.get("SINKFRAME_SCHEMA_DIR", "schema"))
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
            report.errors.append(f"{path}::$.name: connector name {connector.name!r} is also used by {names[connector.name]}")
        names.setdefault(connector.name, str(path))
        try:
            mapper = build_mapper(connector, registry)
            targets = resolve_targets(connector, mapper)
        except PluginLoadError as err:
            report.errors.append(connector.source.problem(("mapper", "plugin"), str(err)))
            continue
        except ConfigError as err:
            report.errors.extend(err.problems)
            continue
        report.errors.extend(_unknown_tables(connector, targets, declared_tables, schema_problem))
        if not report.errors:
            tables = ", ".join(sorted({t.table for t in targets.values()}))
            report.summary = (f"{connector.name}: {connector.topic} -> {connector.plugin} -> {tables} "
                              f"(batch {connector.max_rows} rows / {connector.max_wait_ms} ms, "
                              f"errors.tolerance {connector.tolerance})")
    return reports


def _declared_tables(schema_dir: str) -> tuple[set[str] | None, str | None]:
    try:
        from sinkframe.schema import load_schema
    except ImportError:
        return None, None
    paths = [p for p in schema_dir.split(os.pathsep) if p]
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        return None, f"schema folder {missing[0]} does not exist"
    try:
        return load_schema(paths).table_names(), None
    except ConfigError as err:
        return None, "; ".join(err.problems)


def _unknown_tables(connector: ConnectorConfig, targets, declared: set[str] | None,
                    schema_problem: str | None) -> list[str]:
    if declared is None:
        return [connector.source.problem(("tables",), f"cannot check target tables: {schema_problem}")] \
            if schema_problem else []
    problems = []
    for role, target in sorted(targets.items()):
        if target.table not in declared:
            key = ("tables", role) if role in connector.tables else ("mapper", "plugin")
            problems.append(connector.source.problem(
                key, f"table {target.table!r} (role {role!r}) is declared in no schema spec; "
                     f"known tables: {', '.join(sorted(declared))}"))
    return problems
