"""An appliance installs only the edge extra: the `gridwire` command must work without the
cloud's packages (provision and check are what a field installer runs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLOUD_ONLY = ["sqlalchemy", "alembic", "fastapi", "uvicorn", "httpx", "jwt", "asyncpg", "aiosqlite", "msgspec",
              "astral"]


def test_gridwire_runs_without_the_cloud_extra(tmp_path):
    script = (f"import sys\nfor m in {CLOUD_ONLY!r}: sys.modules[m] = None\n"
              "from gridwire.cli import app\napp()\n")
    for args in (["concentrator", "check", "config/compose/concentrator.toml"],
                 ["concentrator", "provision", "--help"], ["adapter", "run", "--help"]):
        done = subprocess.run([sys.executable, "-c", script, *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr
    refused = subprocess.run([sys.executable, "-c", script, "concentrator", "provision", "--api",
                              "http://127.0.0.1:9", "--claim", "gwc_t", "--out", str(tmp_path / "etc")],
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and "cannot reach the API" in refused.stderr
    # The key was made here first (and is kept for the next attempt); nothing else was written.
    assert sorted(p.name for p in (tmp_path / "etc" / "tls").iterdir()) == ["concentrator.key"]
