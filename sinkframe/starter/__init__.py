"""`sinkframe init`: a starter project that runs as it is.

The connector files are the repository's own `configs/` (installed as
`sinkframe/starter/configs/`, see setup.cfg), so a starter project and the shipped
deployment cannot drift apart; the rest (schema/, docker-compose.yml,
.env.example, README.md) is the `template/` folder beside this file. The tables'
specs are not copied: the built-in plugins bring them (sinkframe.schema.sources).
"""
from __future__ import annotations

from pathlib import Path

from sinkframe.errors import SinkframeError

_HERE = Path(__file__).resolve().parent
TEMPLATE = _HERE / "template"
# Package data names cannot start with a dot (setuptools' globs skip them).
_RENAMED = {"env.example": ".env.example"}


def connector_folder() -> Path:
    """The shipped connector files: installed beside this file; in a checkout, the repository's configs/."""
    installed = _HERE / "configs"
    return installed if installed.is_dir() else _HERE.parents[1] / "configs"


def starter_files() -> dict[str, str]:
    """What `init` writes: path relative to the project folder -> text."""
    files = {f"configs/{path.name}": path.read_text(encoding="utf-8")
             for path in sorted(connector_folder().glob("*.yaml"))}
    for path in sorted(p for p in TEMPLATE.rglob("*") if p.is_file()):
        relative = path.relative_to(TEMPLATE).as_posix()
        files[_RENAMED.get(relative, relative)] = path.read_text(encoding="utf-8")
    return files


def write_project(folder: Path, *, force: bool = False) -> list[Path]:
    """Write the starter project into `folder` (made if needed); the paths written.

    Refuses, writing nothing, when a file it would write exists, unless `force`.
    """
    files = starter_files()
    existing = [rel for rel in files if (folder / rel).exists()]
    if existing and not force:
        raise SinkframeError(f"{folder}: these files exist and would be overwritten: {', '.join(existing)}; "
                             "nothing was written (--force overwrites them)")
    written = []
    for rel, text in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
