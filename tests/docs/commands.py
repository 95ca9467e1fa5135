"""Checks that a ``gridwire`` command line written in a deployment file (compose, a systemd unit,
docs/DEPLOY.md) names a real subcommand with real options."""

from __future__ import annotations

from typer.testing import CliRunner

from gridwire.cli import app


def subcommand(words: list[str]) -> list[str]:
    """The subcommand path of ``gridwire WORDS``: its leading words up to the first option,
    path or number."""
    path = []
    for word in words:
        if word.startswith("-") or "/" in word or word.isdigit() or word == "0.0.0.0":
            break
        path.append(word)
    return path


def assert_gridwire_command(words: list[str], *, where: str) -> None:
    """``gridwire WORDS`` exists: its subcommand answers ``--help`` and lists every option used."""
    path = subcommand(words)
    assert path, f"{where}: no subcommand in {words}"
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, f"{where}: gridwire {' '.join(path)}: {result.output}"
    for option in (w.split("=", 1)[0] for w in words if w.startswith("--")):
        assert option in result.output, f"{where}: gridwire {' '.join(path)} has no option {option}"
