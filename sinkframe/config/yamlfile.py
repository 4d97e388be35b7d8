"""Read a YAML file into Python objects while remembering the line of every key path.

Errors can then say `configs/raw.yaml:12 ($.batch.max_rows)`, which is what a
user needs to fix a file quickly.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from sinkframe.config.interpolate import MissingVariable, has_reference, interpolate_scalar, references
from sinkframe.errors import ConfigError


def json_path(parts: tuple) -> str:
    out = "$"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


@dataclass
class YamlDocument:
    path: Path
    data: Any
    lines: dict[tuple, int] = field(default_factory=dict)
    # With load_yaml(keep_going=True): the problems found, and the key paths of values left as
    # written because a variable they name is not set.
    problems: list[str] = field(default_factory=list)
    unresolved: set[tuple] = field(default_factory=set)

    def where(self, parts: tuple) -> str:
        """`file:line::$.a.b` for a key path (line of the nearest known ancestor)."""
        parts = tuple(parts)
        while parts and parts not in self.lines:
            parts = parts[:-1]
        line = self.lines.get(parts)
        return f"{self.path}:{line}" if line else str(self.path)

    def problem(self, parts, message: str) -> str:
        return f"{self.where(tuple(parts))}::{json_path(tuple(parts))}: {message}"


# One constructor for resolved scalars (ints, bools, timestamps...); it holds no per-file state.
_SCALARS = yaml.SafeLoader("")


def load_yaml(path: Path, env: Mapping[str, str], *, keep_going: bool = False) -> YamlDocument:
    """Parse and interpolate one file. Raises ConfigError listing every problem found, or with
    `keep_going` (for `sinkframe validate`) returns the document with them in `problems` when it could
    still be parsed (a missing variable or a duplicate key)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read: {err}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        reason = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"{where}: invalid YAML: {reason}") from None
    doc = YamlDocument(path=path, data=None)
    problems: list[str] = []
    doc.data = _construct(node, (), doc, env, problems) if node is not None else None
    if problems and not keep_going:
        raise ConfigError(problems[0], problems)
    doc.problems = problems
    return doc


def _construct(node, parts: tuple, doc: YamlDocument, env, problems: list[str]):
    doc.lines[parts] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        result = {}
        for key_node, value_node in node.value:
            key = key_node.value
            if key in result:
                problems.append(doc.problem(parts + (key,), "duplicate key"))
            result[key] = _construct(value_node, parts + (key,), doc, env, problems)
            doc.lines[parts + (key,)] = key_node.start_mark.line + 1  # the key's line, not its value's
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, parts + (i,), doc, env, problems) for i, item in enumerate(node.value)]
    value = _SCALARS.construct_object(node) if node.tag != "tag:yaml.org,2002:str" else node.value
    if isinstance(value, str) and has_reference(value):
        try:
            return interpolate_scalar(value, env, plain=node.style is None)
        except MissingVariable as err:
            problems.append(doc.problem(parts, str(err)))
            doc.unresolved.add(parts)
            return value
    return value


@dataclass(frozen=True)
class VariableReference:
    """One `${VAR:-default}` in a YAML file: which variable, its default, and the key it sets."""

    variable: str
    default: str | None
    path: Path
    parts: tuple


def variable_references(path: Path) -> list[VariableReference]:
    """Every environment variable reference of a file's scalar values, in file order."""
    try:
        node = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: cannot read: {err}") from None
    found: list[VariableReference] = []

    def walk(node, parts: tuple) -> None:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                walk(value_node, parts + (key_node.value,))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, parts + (i,))
        elif isinstance(node.value, str) and has_reference(node.value):
            found.extend(VariableReference(name, default, path, parts) for name, default in references(node.value))

    if node is not None:
        walk(node, ())
    return found
