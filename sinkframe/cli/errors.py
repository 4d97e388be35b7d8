"""How every command reports a sinkframe error: one line per problem, then an exit code.

Exit 2 for a configuration problem (every problem listed, each naming its file
and key), 1 for anything else sinkframe raised on purpose. Other exceptions are
bugs and keep their traceback. A command whose exit 2 already means something
else (`schema plan --detailed-exitcode`: changes to apply) passes
`config_exit=EXIT_ERROR`.
"""
from __future__ import annotations

import sys
from typing import Callable, TextIO, TypeVar

import click

from sinkframe.errors import ConfigError, SinkframeError

T = TypeVar("T")
EXIT_ERROR, EXIT_CONFIG = 1, 2


def report_error(error: SinkframeError, stream: TextIO | None = None, *, config_exit: int = EXIT_CONFIG) -> int:
    """Print `error: ...` for each problem (to stderr unless `stream`); return the exit code."""
    problems = error.problems if isinstance(error, ConfigError) else [str(error)]
    for problem in problems:
        click.echo(f"error: {problem}", file=stream, err=stream is None)
    return config_exit if isinstance(error, ConfigError) else EXIT_ERROR


def exit_on_error(action: Callable[[], T], *, config_exit: int = EXIT_CONFIG) -> T:
    """Run `action`; on a sinkframe error, report it and exit."""
    try:
        return action()
    except SinkframeError as error:
        sys.exit(report_error(error, config_exit=config_exit))
