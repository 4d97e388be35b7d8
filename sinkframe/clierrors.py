"""How every command reports a sinkframe error: one line per problem, then an exit code.

Exit 2 for a configuration problem (every problem listed, each naming its file
and key), 1 for anything else sinkframe raised on purpose. Other exceptions are
bugs and keep their traceback.
"""
from __future__ import annotations

import sys
from typing import Callable, TypeVar

import click

from sinkframe.errors import ConfigError, SinkframeError

T = TypeVar("T")


def exit_on_error(action: Callable[[], T]) -> T:
    try:
        return action()
    except ConfigError as err:
        for problem in err.problems:
            click.echo(f"error: {problem}", err=True)
        sys.exit(2)
    except SinkframeError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(1)
