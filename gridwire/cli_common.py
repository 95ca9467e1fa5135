"""What the ``gridwire`` subcommand modules share: logging set-up and running until a signal."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from gridwire.process import (  # noqa: F401 - re-exported for the subcommand modules
    LOG_FORMAT_VARIABLE,
    READY_FILE_ENV,
    LogFormatError,
    configure_logging,
    run_until_signal,
)

LogLevel = Annotated[str, typer.Option("--log-level", help="Python logging level.")]


def gridwire_command() -> str:
    """How a shell runs this ``gridwire``: the virtualenv's script by its absolute path (a line
    printed for a user to paste works in a fresh shell, virtualenv active or not), else this
    Python running the CLI module."""
    script = Path(os.path.abspath(sys.executable)).parent / "gridwire"
    if script.is_file():
        return shlex.quote(str(script))
    return f"{shlex.quote(os.path.abspath(sys.executable))} -m gridwire.cli"


def _logging(level: str, *, process: str | None = None, format: str | None = None) -> None:  # noqa: A002
    """:func:`gridwire.process.configure_logging`, a bad GRIDWIRE_LOG_FORMAT as a usage error."""
    try:
        configure_logging(level, process=process, format=format)
    except LogFormatError as exc:
        raise typer.BadParameter(str(exc)) from None
