"""The systemd units in config/systemd pass ``systemd-analyze verify`` without a word, every
command they run is a real ``gridwire`` subcommand with real options, and the cloud target
starts every cloud process there is."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cloud.platform import PROCESSES
from tests.docs.commands import assert_gridwire_command

UNITS = Path(__file__).resolve().parents[2] / "config" / "systemd"
# Where the units expect the virtualenv (docs/DEPLOY.md, docs/INSTALL_CONCENTRATOR.md install it there).
INSTALLED_GRIDWIRE = "/opt/gridwire/venv/bin/gridwire"
TEMPLATE = "gridwire-cloud@.service"
# Every unit as systemd would load it: the template once per cloud process.
LOADED = sorted([u.name for u in UNITS.iterdir() if u.is_file() and u.name != TEMPLATE]
                + [TEMPLATE.replace("@", f"@{name}") for name in PROCESSES])


def _install(directory: Path) -> Path:
    """The units in ``directory``, running the ``gridwire`` of the tests' virtualenv (verify
    checks that each program it starts exists)."""
    gridwire = Path(sys.executable).parent / "gridwire"
    assert gridwire.exists(), gridwire
    for unit in UNITS.iterdir():
        if unit.is_file():
            (directory / unit.name).write_text(unit.read_text().replace(INSTALLED_GRIDWIRE, str(gridwire)))
    return directory


def _verify(unit: Path) -> str:
    """``systemd-analyze verify`` of ``unit``: what it says (it exits 0 after many warnings)."""
    binary = shutil.which("systemd-analyze")
    if binary is None:
        pytest.fail("systemd-analyze is not installed: apt-get install systemd (scripts/install.sh does)",
                    pytrace=False)
    done = subprocess.run([binary, "verify", "--man=no", str(unit)], cwd=unit.parent, capture_output=True,
                          text=True, timeout=60, check=False)
    return f"exit {done.returncode}\n{done.stdout}{done.stderr}".strip()


@pytest.mark.parametrize("unit", LOADED)
def test_unit_verifies_without_a_word(unit: str, tmp_path: Path) -> None:
    assert _verify(_install(tmp_path) / unit) == "exit 0"


def test_verify_would_catch_a_mistake(tmp_path: Path) -> None:
    """What the check above rests on: a mistyped value and a missing dependency are reported."""
    directory = _install(tmp_path)
    template = directory / TEMPLATE
    template.write_text(template.read_text().replace("Restart=always", "Restart=sometimes"))
    assert "restart specifier, ignoring: sometimes" in _verify(directory / "gridwire-cloud@api.service")
    (directory / "gridwire-migrate.service").unlink()
    assert "gridwire-migrate.service not found" in _verify(directory / "gridwire-cloud@api.service")


def test_the_cloud_target_wants_every_cloud_process() -> None:
    wanted = set()
    for line in (UNITS / "gridwire-cloud.target").read_text().splitlines():
        if line.startswith("Wants="):
            wanted |= set(line.removeprefix("Wants=").split())
    assert wanted == {TEMPLATE.replace("@", f"@{name}") for name in PROCESSES}


def _commands(unit: str) -> list[list[str]]:
    """The ``gridwire`` command lines a loaded unit runs (ExecStart, ExecStartPre, ...)."""
    template, _, instance = unit.partition("@")
    text = (UNITS / (f"{template}@.service" if instance else unit)).read_text()
    text = text.replace("%i", instance.removesuffix(".service"))
    return [shlex.split(line.split("=", 1)[1])[1:] for line in text.splitlines()
            if re.match(r"Exec\w*=", line) and INSTALLED_GRIDWIRE in line]


@pytest.mark.parametrize("unit", [u for u in LOADED if _commands(u)])
def test_each_gridwire_command_a_unit_runs_exists(unit: str) -> None:
    for words in _commands(unit):
        assert_gridwire_command(words, where=unit)


def test_the_concentrator_runs_python_without_debug_ranges() -> None:
    """Issue 15 (RSS): the concentrator's unit, and so its supervisor and the concentrator the
    supervisor starts (which inherits the environment), run Python without PEP 657's column
    positions; a Python given the unit's environment has none."""
    unit = (UNITS / "gridwire-concentrator.service").read_text().splitlines()
    environment = dict(line.removeprefix("Environment=").split("=", 1) for line in unit
                       if line.startswith("Environment="))
    assert environment.get("PYTHONNODEBUGRANGES") == "1"
    probe = "import sys; print(set(column for *_, column in compile('x = 1', 'x', 'exec').co_positions()))"
    done = subprocess.run([sys.executable, "-c", probe], env=environment, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "{None}", done.stderr
