"""The import contracts hold (``[tool.importlinter]`` in pyproject.toml, run by import-linter), and
they name every package, so a new one cannot slip past them.

Why each contract exists is in docs/ARCHITECTURE.md, "Layers and contracts".
"""

from __future__ import annotations

import importlib.metadata as metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
LINTER = CONFIG["tool"]["importlinter"]
CONTRACTS = {contract["id"]: contract for contract in LINTER["contracts"]}
EXTRAS = ("edge", "cloud", "test")


def layer_names(contract: dict) -> set[str]:
    return {name.strip() for layer in contract["layers"] for name in re.split(r"[|:]", layer)}


def test_the_contracts_are_kept() -> None:
    # A process of its own: import-linter imports nothing of ours, but builds a graph of every module.
    done = subprocess.run([sys.executable, "-c", "import sys\nfrom importlinter.cli import lint_imports\n"
                                                 "sys.exit(lint_imports(no_cache=True))"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert f"{len(CONTRACTS)} kept, 0 broken" in done.stdout, done.stdout[-3000:]


def test_every_package_is_in_the_contracts() -> None:
    shipped = {pattern.rstrip("*") for pattern in CONFIG["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert set(LINTER["root_packages"]) == shipped
    assert layer_names(CONTRACTS["layers"]) == shipped
    assert set(CONTRACTS["no-cycles"]["ancestors"]) == shipped
    cloud = {p.stem for p in (ROOT / "cloud").glob("*.py") if p.stem != "__init__"}
    cloud |= {p.parent.name for p in (ROOT / "cloud").glob("*/__init__.py")}
    assert layer_names(CONTRACTS["cloud-layers"]) == cloud


def _license_is_bad(dist: metadata.Distribution) -> bool:
    """Apache-2.0 only, or LGPLv3: neither may be linked with GPLv2-only gurux-dlms."""
    expression = dist.metadata.get("License-Expression") or ""
    classifiers = [c for c in dist.metadata.get_all("Classifier") or [] if c.startswith("License ::")]
    text = expression or dist.metadata.get("License") or ""
    if "LGPL-3" in text or "LGPLv3" in text or any("Lesser General Public License v3" in c for c in classifiers):
        return True
    if expression:
        return bool(re.fullmatch(r"\(?\s*Apache-2\.0\s*\)?", expression.strip()))
    if re.fullmatch(r"\s*Apache(\s+License)?[ ,-]*(Version\s*)?2(\.0)?\s*", text):
        return True
    return bool(classifiers) and all("Apache" in c for c in classifiers)


def _installed_by_extras() -> set[str]:
    """Every distribution that installing gridwire with its extras pulls in (markers evaluated)."""
    seen: set[str] = set()
    todo = [(req, extra) for extra in EXTRAS for req in metadata.requires("gridwire") or []]
    while todo:
        text, extra = todo.pop()
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": extra}):
            continue
        name = requirement.name.lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        for sub_extra in requirement.extras or {""}:
            todo += [(sub, sub_extra) for sub in metadata.requires(name) or []]
    return seen


def test_the_licence_contract_forbids_every_apache_only_or_lgpl3_package_we_install() -> None:
    modules_of: dict[str, set[str]] = {}
    for module, dists in metadata.packages_distributions().items():
        for dist in dists:
            modules_of.setdefault(dist.lower().replace("_", "-"), set()).add(module)
    bad = {name for name in _installed_by_extras() if _license_is_bad(metadata.distribution(name))}
    assert {"astral", "asyncpg"} <= bad  # the two the cloud extra names itself
    needed = {module for name in bad for module in modules_of.get(name, ()) if not module.startswith("_")}
    forbidden = set(CONTRACTS["edge-licences"]["forbidden_modules"])
    assert needed <= forbidden, f"add {sorted(needed - forbidden)} to the edge-licences contract"
