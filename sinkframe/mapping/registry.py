"""Finding and loading mapper plugins.

Three sources, in this order (a later source cannot shadow an earlier name):
1. built-ins: the modules of the `plugins/` folder (installed as `sinkframe_plugins`);
2. the `sinkframe.mappers` entry-point group of installed packages;
3. every `*.py` file of each `--plugins-dir`.
Finding (which plugins exist) is kept apart from loading (importing them), so a
broken third-party plugin is reported as a `PluginLoadError` naming it, and an
unknown name is reported with the closest known one and the list of them all.

A plugin may ship the table specs of the tables it writes (`Mapper.table_specs`);
`spec_files` gathers them for `sinkframe.schema.sources`.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import pkgutil
import sys
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Iterable

from sinkframe.config.connector import did_you_mean
from sinkframe.errors import PluginLoadError
from sinkframe.mapping.base import Mapper

ENTRY_POINT_GROUP = "sinkframe.mappers"
BUILTIN_PACKAGE = "sinkframe_plugins"


@dataclass(frozen=True)
class PluginInfo:
    name: str
    origin: str  # "built-in", "entry point <dist>", "<path>"
    mapper: type[Mapper]


def _mappers_in_module(module) -> list[type[Mapper]]:
    found = [obj for _, obj in inspect.getmembers(module, inspect.isclass)
             if issubclass(obj, Mapper) and obj is not Mapper and obj.__module__ == module.__name__
             and getattr(obj, "name", None)]
    return sorted(found, key=lambda cls: cls.name)


def _import_file(path: Path):
    module_name = f"sinkframe_local_plugin_{abs(hash(str(path.resolve())))}_{path.stem}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        del sys.modules[module_name]
        raise PluginLoadError(f"plugin file {path}: import failed: {type(err).__name__}: {err}") from err
    return module


class PluginRegistry:
    """All mapper plugins visible to this process."""

    def __init__(self, plugins_dirs: Iterable[Path] = ()):
        self.plugins_dirs = [Path(p) for p in plugins_dirs]
        self._plugins: dict[str, PluginInfo] | None = None
        self.load_errors: list[PluginLoadError] = []

    def _add(self, found: dict[str, PluginInfo], mapper: type[Mapper], origin: str) -> None:
        if mapper.name in found:
            other = found[mapper.name]
            self.load_errors.append(PluginLoadError(
                f"plugin {mapper.name!r} from {origin} ignored: the name is taken by {other.origin}"))
            return
        found[mapper.name] = PluginInfo(mapper.name, origin, mapper)

    def _discover(self) -> dict[str, PluginInfo]:
        found: dict[str, PluginInfo] = {}
        package = importlib.import_module(BUILTIN_PACKAGE)
        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
            try:
                module = importlib.import_module(f"{BUILTIN_PACKAGE}.{info.name}")
            except Exception as err:
                self.load_errors.append(PluginLoadError(f"built-in plugin module {info.name}: {err}"))
                continue
            for mapper in _mappers_in_module(module):
                self._add(found, mapper, "built-in")
        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist = ep.dist.name if ep.dist else "?"
            try:
                mapper = ep.load()
            except Exception as err:
                self.load_errors.append(PluginLoadError(
                    f"plugin {ep.name!r} from package {dist} ({ep.value}): import failed: "
                    f"{type(err).__name__}: {err}"))
                continue
            if not (inspect.isclass(mapper) and issubclass(mapper, Mapper)):
                self.load_errors.append(PluginLoadError(
                    f"plugin {ep.name!r} from package {dist}: {ep.value} is not a sinkframe Mapper class"))
                continue
            self._add(found, mapper, f"entry point ({dist})")
        for folder in self.plugins_dirs:
            if not folder.is_dir():
                self.load_errors.append(PluginLoadError(f"--plugins-dir {folder}: not a directory"))
                continue
            for path in sorted(folder.glob("*.py")):
                try:
                    module = _import_file(path)
                except PluginLoadError as err:
                    self.load_errors.append(err)
                    continue
                for mapper in _mappers_in_module(module):
                    self._add(found, mapper, str(path))
        return found

    @property
    def plugins(self) -> dict[str, PluginInfo]:
        if self._plugins is None:
            self._plugins = self._discover()
        return self._plugins

    def get(self, name: str) -> type[Mapper]:
        try:
            return self.plugins[name].mapper
        except KeyError:
            close = self.closest(name)
            guess = f" (did you mean {close!r}?)" if close else ""
            known = ", ".join(sorted(self.plugins)) or "none"
            hint = "".join(f"\n  ({err})" for err in self.load_errors)
            raise PluginLoadError(f"unknown mapper plugin {name!r}{guess}; known plugins: {known}{hint}") from None

    def closest(self, name: str) -> str | None:
        """The known plugin `name` is probably a misspelling of (the same rule as for config keys)."""
        return did_you_mean(name, sorted(self.plugins))

    def spec_files(self) -> dict[Path, list[str]]:
        """Each table spec file the plugins ship -> the plugins shipping it (several may share one)."""
        files: dict[Path, list[str]] = {}
        for name, info in sorted(self.plugins.items()):
            for path in info.mapper.table_specs:
                files.setdefault(Path(path).resolve(), []).append(name)
        return files
