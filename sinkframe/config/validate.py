"""`sinkframe validate`: every offline check of connector files, every error reported at once.

A file is checked layer by layer, in the order a run would meet its problems: the
file itself (YAML, connector schema, cross-key rules), its plugin, the plugin's
config, its table roles, its models and alert rules against the mapper's columns,
then what the mapper writes against the table specs (`sinkframe.schema.contract`).
A mistake in one layer does not hide the others: a value the connector schema
refuses is set aside (`ConnectorCheck`), and every layer that does not depend on
it still runs.

Where a layer depends on one that failed, it says so once (a note) instead of
staying silent. A misspelt plugin name does not hide the rest: when it is close
to a known plugin (the one its "did you mean" names), the layers after it are
checked against that plugin, and each problem they find says so.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

from sinkframe.config.connector import ConnectorCheck, ConnectorConfig, check_connector, schema_problems
from sinkframe.config.settings import read_setting
from sinkframe.errors import ConfigError, PluginLoadError
from sinkframe.mapping.registry import PluginRegistry
from sinkframe.schema.contract import target_problems
from sinkframe.schema.sources import load_specs_or_problem
from sinkframe.schema.spec import SchemaSpec


@dataclass
class FileReport:
    path: str
    errors: list[str] = field(default_factory=list)
    summary: str | None = None
    notes: list[str] = field(default_factory=list)  # checks that could not run, and why


def validate_files(paths: Sequence[Path], *, plugins_dirs: Sequence[Path] = (),
                   schema_dir: str | None = None) -> list[FileReport]:
    """`schema_dir`: spec folders/files, ':'-separated (default: SINKFRAME_SCHEMA_DIR); the plugins' own
    specs complete them (sinkframe.schema.sources)."""
    registry = PluginRegistry(plugins_dirs)
    schema_dir = read_setting("schema_dir") if schema_dir is None else schema_dir
    spec, spec_problem = load_specs_or_problem([p for p in schema_dir.split(os.pathsep) if p], registry)
    reports, names = [], {}
    for path in paths:
        report = FileReport(str(path))
        reports.append(report)
        check = check_connector(Path(path))
        report.errors.extend(check.problems)
        connector = check.config
        if connector is None:
            continue
        if connector.name and connector.name in names:
            report.errors.append(connector.doc.problem(("name",), f"connector name {connector.name!r} is also "
                                                                  f"used by {names[connector.name]}"))
        names.setdefault(connector.name, str(path))
        targets = _ConnectorChecks(check, registry, spec, spec_problem, report).run()
        if not report.errors:
            report.summary = _summary(connector, targets)
    return reports


class _ConnectorChecks:
    """The layers after the file itself: plugin, plugin config, table roles, alert rules, table specs."""

    def __init__(self, check: ConnectorCheck, registry: PluginRegistry, spec: SchemaSpec | None,
                 spec_problem: str | None, report: FileReport):
        self.check, self.connector = check, check.config
        self.registry, self.spec, self.spec_problem = registry, spec, spec_problem
        self.report = report
        self.label = ""  # said after each problem found against a guessed plugin

    def problem(self, parts: tuple, message: str) -> None:
        self.report.errors.append(self.connector.doc.problem(parts, message) + self.label)

    def add(self, problems: list[str]) -> None:
        self.report.errors.extend(p + self.label for p in problems)

    def note(self, parts: tuple, message: str) -> None:
        self.report.notes.append(self.connector.doc.problem(parts, f"not checked: {message}"))

    def run(self) -> dict:
        """Every layer that can run; the connector's targets by role (empty when the plugin is unknown)."""
        mapper_cls = self._plugin()
        if mapper_cls is None:
            return {}
        mapper = self._plugin_config(mapper_cls)
        targets = self._tables(mapper)
        self._models_and_alerts(mapper)
        self._table_specs(targets)
        return targets

    def _plugin(self):
        connector = self.connector
        if not self.check.usable("mapper", "plugin"):
            self.note(("mapper",), "the plugin's config, the table roles, the alert rules and the tables, "
                                   "for want of a valid mapper.plugin")
            return None
        try:
            return self.registry.get(connector.plugin)
        except PluginLoadError as err:
            self.problem(("mapper", "plugin"), str(err))
        guess = self.registry.closest(connector.plugin)
        if guess is None:
            self.note(("mapper", "plugin"), f"the plugin's config, the table roles, the alert rules and the "
                                            f"tables, for want of a known plugin {connector.plugin!r}")
            return None
        self.label = f" [checked against plugin {guess!r}, the plugin you probably meant]"
        self.connector = replace(connector, plugin=guess)
        return self.registry.get(guess)

    def _plugin_config(self, mapper_cls):
        """The mapper, built as `run` builds it; its class when its config is wrong (the targets are
        class attributes by the plugin contract, which is all the later layers need)."""
        connector = self.connector
        if not self.check.usable("mapper", "config"):
            return mapper_cls
        problems = schema_problems(connector.doc, mapper_cls.config_schema, connector.plugin_config,
                                   prefix=("mapper", "config"))
        self.add(problems)
        return mapper_cls if problems else mapper_cls(connector.plugin_config)

    def _tables(self, mapper) -> dict:
        """The targets bound to their tables; a role the plugin lacks is a problem, the others still count."""
        from sinkframe.pipeline.runner import resolve_targets

        connector = self.connector
        known = {role: table for role, table in connector.tables.items() if role in mapper.targets}
        try:
            resolve_targets(connector, mapper)
        except ConfigError as err:
            self.add(err.problems)
        return resolve_targets(replace(connector, tables=known), mapper)

    def _models_and_alerts(self, mapper) -> None:
        from sinkframe.alerts import parse_rules
        from sinkframe.models.spec import parse_models, with_model_columns

        connector = self.connector
        where = lambda path: connector.doc.problem(path, "")  # noqa: E731
        models, problems = parse_models(list(connector.models), mapper.targets, where=where)
        self.add(problems)
        if not self.check.usable("alerts"):
            self.note(("alerts",), "the alert rules, until $.alerts is a list of rules")
            return
        # A model's score is a column its alert rules may use (`when: contact_health > 0.8`).
        _rules, problems = parse_rules(list(connector.alerts), with_model_columns(mapper.targets, models),
                                       where=where)
        self.add(problems)

    def _table_specs(self, targets: dict) -> None:
        if not self.check.usable("tables"):
            self.note(("tables",), "the tables against their specs, until $.tables is valid")
            return
        if self.spec is None:
            self.problem(("tables",), f"cannot check target tables: {self.spec_problem}")
            return
        self.add(target_problems(self.connector, targets, self.spec))


def _summary(connector: ConnectorConfig, targets: dict) -> str:
    tables = ", ".join(sorted({t.table for t in targets.values()}))
    return (f"{connector.name}: {connector.topic} -> {connector.plugin} -> {tables} "
            f"(batch {connector.max_rows} rows / {connector.max_wait_ms} ms, "
            f"errors.tolerance {connector.tolerance})")
