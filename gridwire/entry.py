"""The ``gridwire`` command's entry: the concentrator's two resident commands without typer.

``gridwire concentrator run`` and ``gridwire concentrator supervise`` stay resident on a small
appliance, where typer, its vendored click and the whole CLI's modules cost memory for nothing
(issue 15: RSS). :func:`resident` recognises exactly their plain forms (a config file and the
options ``gridwire concentrator run|supervise --help`` lists, ``--name value`` or ``--name=value``,
each at most once) and runs them through :mod:`gridwire.concentrator_process`. Everything else
(``--help``, a misspelt or missing option, a bad GRIDWIRE_LOG_FORMAT, every other command) goes to
the typer app, so help, errors and exit codes stay the CLI's own.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

# Each resident command's options (all take a value) besides the config file argument.
OPTIONS = {
    "run": ("--log-level",),
    "supervise": ("--software-dir", "--factory", "--log-level"),
}


def parse(argv: Sequence[str]) -> tuple[str, Path, dict[str, str]] | None:
    """``(command, config, options)`` of a plain ``concentrator run|supervise`` command line
    (``argv`` without the program), else None (for the typer app)."""
    if len(argv) < 2 or argv[0] != "concentrator" or argv[1] not in OPTIONS:
        return None
    command, allowed = argv[1], OPTIONS[argv[1]]
    config: Path | None = None
    options: dict[str, str] = {}
    rest = list(argv[2:])
    while rest:
        token = rest.pop(0)
        if not token.startswith("-"):
            if config is not None:
                return None
            config = Path(token)
            continue
        name, equals, value = token.partition("=")
        if name not in allowed or name in options:
            return None
        if not equals:
            if not rest:
                return None
            value = rest.pop(0)
        options[name] = value
    if config is None:
        return None
    from gridwire.process import LogFormatError, log_format

    try:
        log_format()
    except LogFormatError:
        return None  # the typer app reports it as a usage error
    return command, config, options


def resident(argv: Sequence[str]) -> Callable[[], int] | None:
    """The resident command ``argv`` runs, ready to call (its exit code), or None."""
    parsed = parse(argv)
    if parsed is None:
        return None
    command, config, options = parsed
    from gridwire import concentrator_process

    log_level = options.get("--log-level", "INFO")
    if command == "run":
        return lambda: concentrator_process.run(config, log_level=log_level)
    factory = options.get("--factory")
    return lambda: concentrator_process.supervise(
        config, software_dir=Path(options.get("--software-dir", "/var/lib/gridwire/software")),
        factory=Path(factory) if factory is not None else None, log_level=log_level)


def main() -> None:
    """The ``gridwire`` console script (and ``python -m gridwire``)."""
    command = resident(sys.argv[1:])
    if command is not None:
        sys.exit(command())
    from gridwire.cli import app

    app()
