"""What a new user meets first: the demo script's help, a busy port, the package metadata."""

from __future__ import annotations

import socket
import subprocess
import tomllib
from pathlib import Path

import typer
from typer.testing import CliRunner

from gridwire.cli import app

REPO = Path(__file__).resolve().parents[2]


def test_demo_script_help_installs_nothing_and_lists_every_demo_option(tmp_path: Path) -> None:
    # apt-get, sudo and pip on the PATH leave a mark if anything runs them.
    marks = tmp_path / "ran"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("apt-get", "sudo", "pip", "python3"):
        script = bin_dir / tool
        script.write_text(f"#!/bin/sh\necho {tool} >> {marks}\nexit 1\n")
        script.chmod(0o755)
    result = subprocess.run(["bash", str(REPO / "scripts" / "demo.sh"), "--help"], capture_output=True, text=True,
                            env={"PATH": f"{bin_dir}:/usr/bin:/bin"}, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    assert not marks.exists(), marks.read_text()
    command = typer.main.get_command(app)
    demo = command.commands["demo"]  # type: ignore[attr-defined]
    options = {opt for param in demo.params for opt in param.opts if opt.startswith("--") and opt != "--help"}
    missing = sorted(opt for opt in options if opt not in result.stdout)
    assert missing == [], f"scripts/demo.sh --help does not list {missing}"


def test_demo_on_a_busy_port_says_which_port_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(app, ["demo", "--dir", str(tmp_path / "demo"), "--mqtt-port", str(port)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert f"port {port} is already in use" in lines[0] and "--mqtt-port" in lines[0]
    assert "Traceback" not in result.output
    assert not (tmp_path / "demo").exists()  # nothing was started or written


def test_package_licence_is_an_spdx_expression() -> None:
    # setuptools warns at every install about a {text = ...} table and licence classifiers (PEP 639).
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"] == "GPL-2.0-or-later"
    assert not [c for c in project.get("classifiers", []) if c.startswith("License ::")]
