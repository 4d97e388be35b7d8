"""Where the table specs come from: the project's spec folders, then the specs the plugins ship.

A project names its spec folders or files with SINKFRAME_SCHEMA_DIR / `--schema-dir`
(default `./schema`). A plugin ships the specs of the tables it writes
(`Mapper.table_specs`; the built-in plugins' are the repository's `schema/`,
installed as `sinkframe_plugins/schema/`). The project's spec of a table wins; a
table it does not declare comes from the plugin that writes it, so a project that
only uses built-in plugins needs no spec of its own. `SchemaSpec.origin` says which
file each table came from (`sinkframe schema plan` prints it).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

from sinkframe.config.settings import SETTING
from sinkframe.errors import ConfigError
from sinkframe.mapping.registry import PluginRegistry
from sinkframe.schema.spec import SchemaSpec, load_schema

DEFAULT_FOLDER = SETTING["schema_dir"].default


def load_specs(paths: Sequence[str | os.PathLike], registry: PluginRegistry | None = None,
               env: Mapping[str, str] | None = None) -> SchemaSpec:
    """The project's specs (`paths`) completed by the plugins' (those `registry` finds).

    The default folder may be absent (the plugins' specs are then all there is); any
    other path named must exist. Raises ConfigError listing every problem.
    """
    registry = registry or PluginRegistry()
    project = [p for p in paths if not (str(p) == DEFAULT_FOLDER and not Path(p).exists())]
    shipped = {path: shipped_by(names) for path, names in registry.spec_files().items()}
    return load_schema(project, env, shipped=shipped)


def shipped_by(plugins: Sequence[str]) -> str:
    return f"plugin {plugins[0]}" if len(plugins) == 1 else f"plugins {', '.join(plugins)}"


def load_specs_or_problem(paths: Sequence[str | os.PathLike], registry: PluginRegistry | None = None
                          ) -> tuple[SchemaSpec | None, str | None]:
    """(the specs, None), or (None, why they cannot be loaded) for a check that goes on without them."""
    try:
        return load_specs(paths, registry), None
    except ConfigError as err:
        return None, "; ".join(err.problems)


def origin_lines(spec: SchemaSpec, tables: set[str] | None = None) -> list[str]:
    """`table <- file:line (shipped with plugin x)` for each table (of `tables`) and continuous aggregate on them,
    then the shipped objects set aside."""
    names = sorted(n for n in spec.tables if tables is None or n in tables)
    names += sorted(n for n, c in spec.continuous_aggregates.items() if tables is None or c.source in tables)
    lines = [f"spec: {name} <- {spec.origin(name)}" for name in names]
    return lines + [f"spec: not used: {reason}" for reason in spec.set_aside]
