"""`${VAR}` and `${VAR:-default}` interpolation of YAML scalar values.

Interpolation happens on parsed scalars (not on raw text), so a value can never
inject YAML structure. `$${` escapes a literal `${`. An unquoted scalar that
contained a reference is re-read as a YAML scalar after substitution, so
`max_rows: ${BATCH_ROWS:-5000}` is the integer 5000, as a user would expect.
"""
from __future__ import annotations

import re
from typing import Mapping

import yaml

_REFERENCE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-((?:[^}\\]|\\.)*))?\}")


class MissingVariable(KeyError):
    def __init__(self, name: str):
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"environment variable ${{{self.name}}} is not set and has no default (use ${{{self.name}:-default}})"


def has_reference(text: str) -> bool:
    return "${" in text


def references(text: str) -> list[tuple[str, str | None]]:
    """(variable, default or None) of each `${VAR}` / `${VAR:-default}` in `text`."""
    return [(m.group(1), m.group(2).replace("\\}", "}") if m.group(2) is not None else None)
            for m in _REFERENCE.finditer(text) if m.group(0) != "$${"]


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Substitute references in one string; raises MissingVariable."""

    def substitute(match: re.Match) -> str:
        if match.group(0) == "$${":
            return "${"
        name, default = match.group(1), match.group(2)
        value = env.get(name)
        if value is None or (value == "" and default is not None):
            if default is None:
                raise MissingVariable(name)
            return default.replace("\\}", "}")
        return value

    return _REFERENCE.sub(substitute, text)


def interpolate_scalar(text: str, env: Mapping[str, str], *, plain: bool):
    """Interpolate a scalar; a plain (unquoted) one is re-typed as YAML would type it."""
    result = interpolate(text, env)
    if plain and result != text:
        try:
            typed = yaml.safe_load(result)
        except yaml.YAMLError:
            return result
        if isinstance(typed, (int, float, bool)) or typed is None:
            return typed
    return result
