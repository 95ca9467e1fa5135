"""The built package (once per session: about a minute of ``pip wheel`` of the edge extra) and
the helpers that install it into a throwaway root with ``dpkg --root``."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = "gridwire-concentrator"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: apt-get install lintian dpkg-dev (scripts/install.sh does)",
                    pytrace=False)
    return path


def packager():
    spec = importlib.util.spec_from_file_location("package_concentrator", REPO / "scripts" / "package_concentrator.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tool("dpkg-deb")
    return packager().build(tmp_path_factory.mktemp("deb"))


def run(*args: str | Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, check=False,
                          env={**os.environ, **env})


def dpkg(root: Path, *args: str | Path) -> str:
    done = run(tool("dpkg"), f"--root={root}", "--force-script-chrootless", "--force-depends", *args)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def throwaway_root(parent: Path) -> Path:
    root = parent / "root"
    (root / "var" / "lib" / "dpkg" / "info").mkdir(parents=True)
    (root / "var" / "lib" / "dpkg" / "updates").mkdir()
    (root / "var" / "lib" / "dpkg" / "status").touch()
    return root
