"""`sinkframe init [DIR]`: a starter project (the work is in sinkframe.starter)."""
from __future__ import annotations

from pathlib import Path

import click

from sinkframe.cli.errors import exit_on_error


@click.command("init")
@click.argument("directory", default=".", type=click.Path(path_type=Path, file_okay=False))
@click.option("--force", is_flag=True, help="Overwrite the files of the starter project that exist.")
def init_cli(directory: Path, force: bool) -> None:
    """Write a starter project into DIRECTORY (default: here): connector files for the seed topics,
    schema/, docker-compose.yml, .env.example and a README. Refuses to overwrite a file without --force."""
    from sinkframe.starter import write_project

    written = exit_on_error(lambda: write_project(directory, force=force))
    for path in written:
        click.echo(f"wrote {path}")
    where = "" if directory == Path(".") else f"cd {directory} && "
    click.echo(f"next: {where}sinkframe validate configs/*.yaml  (then see README.md)")

