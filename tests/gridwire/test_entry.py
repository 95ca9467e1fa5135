"""The ``gridwire`` entry (gridwire/entry.py): the concentrator's resident commands, as the unit
runs them, load no typer, click, rich nor the rest of the CLI (issue 15: RSS); every other command
line, ``--help`` and errors included, is the typer app's, as before."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gridwire.cli_common import READY_FILE_ENV
from gridwire.entry import parse
from gridwire.procs import ManagedProcess
from tests.fixtures.mosquitto import MosquittoServer
from tests.fixtures.waiting import wait_for

CLI_ONLY = ("typer", "click", "rich", "shellingham", "gridwire.cli", "gridwire.cli_common")


def imported(importtime_log: Path) -> set[str]:
    """The modules a process started with ``-X importtime`` imported (its stderr)."""
    return {line.split("|")[2].strip() for line in importtime_log.read_text().splitlines()
            if line.startswith("import time:") and line.count("|") == 2} - {"imported package"}


def cli_modules(modules: set[str]) -> set[str]:
    return {name for name in modules if name.split(".")[0] in CLI_ONLY or name in CLI_ONLY}


@pytest.mark.parametrize("argv, parsed", [
    (["concentrator", "run", "c.toml"], ("run", Path("c.toml"), {})),
    (["concentrator", "run", "--log-level", "DEBUG", "c.toml"], ("run", Path("c.toml"), {"--log-level": "DEBUG"})),
    (["concentrator", "run", "c.toml", "--log-level=WARNING"], ("run", Path("c.toml"), {"--log-level": "WARNING"})),
    (["concentrator", "supervise", "c.toml", "--software-dir", "/s", "--factory=/f", "--log-level", "INFO"],
     ("supervise", Path("c.toml"), {"--software-dir": "/s", "--factory": "/f", "--log-level": "INFO"})),
])
def test_the_plain_resident_command_lines_are_recognised(argv: list[str], parsed: tuple) -> None:
    assert parse(argv) == parsed


@pytest.mark.parametrize("argv", [
    [], ["concentrator"], ["concentrator", "check", "c.toml"], ["cloud", "ingest"],
    ["concentrator", "run"], ["concentrator", "run", "--help"], ["concentrator", "run", "c.toml", "--help"],
    ["concentrator", "run", "a.toml", "b.toml"], ["concentrator", "run", "c.toml", "--log-level"],
    ["concentrator", "run", "c.toml", "--log-level", "INFO", "--log-level", "DEBUG"],
    ["concentrator", "run", "c.toml", "--factory", "/f"], ["concentrator", "run", "c.toml", "--"],
    ["concentrator", "run", "c.toml", "--log-lvl", "INFO"], ["concentrator", "supervise", "--factory", "/f"],
])
def test_anything_else_goes_to_the_typer_app(argv: list[str]) -> None:
    assert parse(argv) is None


def test_a_bad_log_format_goes_to_the_typer_app(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRIDWIRE_LOG_FORMAT", "xml")
    assert parse(["concentrator", "run", "c.toml"]) is None


def gridwire(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gridwire", *args], capture_output=True, text=True, timeout=120)


def test_help_and_usage_errors_are_the_typer_apps() -> None:
    help_text = gridwire("concentrator", "run", "--help")
    assert help_text.returncode == 0 and "The concentrator's TOML config file." in help_text.stdout
    assert "--log-level" in help_text.stdout
    missing = gridwire("concentrator", "supervise", "c.toml", "--software-dir")
    assert missing.returncode == 2 and "--software-dir" in missing.stderr
    assert "Commands" in gridwire("--help").stdout


def test_a_bad_config_is_the_same_error_either_way(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("concentrator_id = \n")
    lean = gridwire("concentrator", "run", str(config))
    typed = subprocess.run([sys.executable, "-m", "gridwire.cli", "concentrator", "run", str(config)],
                           capture_output=True, text=True, timeout=120)
    assert lean.returncode == typed.returncode == 2
    assert lean.stderr.startswith("error: ") and lean.stderr.splitlines()[0] == typed.stderr.splitlines()[0]


async def test_the_supervisor_and_its_concentrator_run_without_the_cli_modules(
        mosquitto: MosquittoServer, tmp_path: Path) -> None:
    """As the unit runs them: ``gridwire concentrator supervise`` starting the factory tree's
    ``bin/gridwire concentrator run``, connected to the broker (ready), then stopped by SIGTERM."""
    config = tmp_path / "concentrator.toml"
    config.write_text('concentrator_id = "conc-1"\noutbox = "outbox.sqlite"\nstate = "state.sqlite"\n'
                      'invocation_counters = "counters.sqlite"\n\n'
                      f'[broker]\nhost = "{mosquitto.host}"\nport = {mosquitto.port}\n'
                      'username = "conc-1"\npassword = "conc-1-pw"\n\n'
                      '[[meters]]\nprotocol = "dlms"\nmeter_id = "m-1"\nhost = "127.0.0.1"\nport = 1\n'
                      'security = "none"\n')
    entry = tmp_path / "factory" / "bin" / "gridwire"
    entry.parent.mkdir(parents=True)
    child_log = tmp_path / "concentrator.log"
    entry.write_text(f'#!/bin/sh\nexec "{sys.executable}" -X importtime -m gridwire "$@" 2>"{child_log}"\n')
    entry.chmod(0o755)
    ready_file = tmp_path / "concentrator.ready"
    supervisor = ManagedProcess(
        argv=[sys.executable, "-X", "importtime", "-m", "gridwire", "concentrator", "supervise", str(config),
              "--software-dir", str(tmp_path / "software"), "--factory", str(entry.parent.parent)],
        env={READY_FILE_ENV: str(ready_file)}, log=tmp_path / "supervisor.log", cwd=tmp_path)
    supervisor.start()
    try:
        await wait_for(ready_file.exists, timeout=60, what="the supervised concentrator to connect")
    finally:
        supervisor.stop()
    assert supervisor.proc.returncode == 0, supervisor.log.read_text()[-3000:]
    concentrator, supervising = imported(child_log), imported(supervisor.log)
    assert {"edge.concentrator", "edge.dlms.client", "gridwire.concentrator_process"} <= concentrator
    assert {"edge.selfupdate.supervisor", "gridwire.concentrator_process"} <= supervising
    assert cli_modules(concentrator) == set()
    assert cli_modules(supervising) == set()
    # The supervisor runs no event loop, opens no outbox and unpacks no update: no asyncio (ssl),
    # no sqlite3, no tarfile nor shutil (edge/selfupdate/releases.py imports them to install).
    assert {"asyncio", "ssl", "sqlite3", "tarfile", "shutil", "edge.concentrator"} & supervising == set()
    # paho's urllib.request (and http.client, email with it) is deferred (gridwire/deferred.py):
    # paho reads the proxy settings through it only with PySocks installed. email stays while
    # importlib.metadata (pydantic's plugin loader) loads it for itself.
    assert {"urllib.request", "http.client"} & concentrator == set()
    # A TCP meter's link needs no pyserial (nor termios): edge/dlms/links.py imports it to open a port.
    assert {"serial", "termios"} & concentrator == set()
    # gurux's XML save and load (xml.etree, minidom, pyexpat) are deferred too.
    assert {"xml.etree.ElementTree", "xml.etree.cElementTree", "xml.dom.minidom", "pyexpat"} & concentrator == set()
    assert "email" not in concentrator or "importlib.metadata" in concentrator
