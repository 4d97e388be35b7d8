"""Built-in device-type mapper plugins, and the table specs they ship."""
from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def shipped_specs(*names: str) -> tuple[Path, ...]:
    """Files of the repository's schema/ folder, which is installed as sinkframe_plugins/schema/
    (setup.cfg). In a checkout (an editable install) this package is plugins/, beside schema/."""
    folder = _HERE / "schema"
    if not folder.is_dir():
        folder = _HERE.parent / "schema"
    return tuple(folder / name for name in names)
