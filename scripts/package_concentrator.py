#!/usr/bin/env python3
"""Build the Debian package ``gridwire-concentrator`` and its offline bundle with dpkg-deb.

    .venv/bin/python scripts/package_concentrator.py --out dist/

The package ships the wheels of ``gridwire[edge]`` (and nothing of the cloud extra) for the
Python that runs this script; its postinst builds /opt/gridwire/venv from them without network.
It also ships the systemd unit, a sysusers.d/tmpfiles.d setup (user gridwire in group dialout,
/etc/gridwire, /var/lib/gridwire) and a default config that ``gridwire concentrator check``
accepts, naming the placeholders left to fill. The offline bundle is a tar of the .deb, every
wheel it needs and their SHA256SUMS, for an appliance without internet.

    .venv/bin/python scripts/package_concentrator.py --software dist/gridwire-concentrator_*.bundle.tar

builds the image of an over-the-air update of the concentrator's own software from a bundle's
wheels: a .tar.gz of a tree whose ``bin/gridwire`` runs the system's Python on the tree's own
``lib`` (installed with ``pip --target``), so it runs wherever the update unpacks it. Sign it
with ``gridwire firmware sign --kind concentrator-software`` (docs/FIRMWARE.md).
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HERE = REPO / "packaging" / "deb"
PACKAGE = "gridwire-concentrator"
MAINTAINER = "Gridwire developers <dev@gridwire.example.org>"


def project_version() -> str:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def build_wheels(python: str, into: Path) -> None:
    """Wheels of gridwire[edge] and every dependency, for ``python`` (its version and platform)."""
    into.mkdir(parents=True)
    subprocess.run([python, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(into), f"{REPO}[edge]"],
                   check=True)


def architecture(wheels: Path) -> str:
    """``all`` if every wheel is pure Python, else this machine's Debian architecture."""
    if all(w.name.endswith("-none-any.whl") for w in wheels.glob("*.whl")):
        return "all"
    return subprocess.run(["dpkg", "--print-architecture"], check=True, capture_output=True,
                          text=True).stdout.strip()


def python_depends(python: str) -> str:
    major, minor = subprocess.run([python, "-c", "import sys; print(*sys.version_info[:2])"], check=True,
                                  capture_output=True, text=True).stdout.split()
    nxt = f"{major}.{int(minor) + 1}"
    return f"python3 (>= {major}.{minor}), python3 (<< {nxt}), python3-venv, systemd"


def install(src: Path, dest: Path, mode: int = 0o644) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    dest.chmod(mode)


def write(dest: Path, text: str | bytes, mode: int = 0o644) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(text.encode() if isinstance(text, str) else text)
    dest.chmod(mode)


def stage_tree(root: Path, wheels: Path, version: str, python: str) -> str:
    """Lay out the package's files under ``root``; returns its architecture."""
    opt = root / "opt" / "gridwire"
    shutil.copytree(wheels, opt / "wheels")
    for whl in (opt / "wheels").iterdir():
        whl.chmod(0o644)
    write(opt / "wheels" / "REQUIREMENT", f"gridwire[edge]=={project_version()}\n")
    install(HERE / "make-venv", opt / "lib" / "make-venv", 0o755)
    install(REPO / "config" / "concentrator.example.toml", opt / "share" / "concentrator.example.toml")
    install(HERE / "concentrator.toml", root / "etc" / "gridwire" / "concentrator.toml")
    install(REPO / "config" / "systemd" / "gridwire-concentrator.service",
            root / "lib" / "systemd" / "system" / "gridwire-concentrator.service")
    install(HERE / "sysusers.conf", root / "usr" / "lib" / "sysusers.d" / "gridwire.conf")
    install(HERE / "tmpfiles.conf", root / "usr" / "lib" / "tmpfiles.d" / "gridwire.conf")
    doc = root / "usr" / "share" / "doc" / PACKAGE
    install(HERE / "copyright", doc / "copyright")
    changelog = (f"{PACKAGE} ({version}) unstable; urgency=medium\n\n"
                 f"  * Built from the Gridwire source by scripts/package_concentrator.py.\n\n"
                 f" -- {MAINTAINER}  Fri, 04 Dec 2026 00:00:00 +0000\n")
    write(doc / "changelog.gz", gzip.compress(changelog.encode(), mtime=0))
    install(HERE / "lintian-overrides", root / "usr" / "share" / "lintian" / "overrides" / PACKAGE)
    for d in sorted(p for p in root.rglob("*") if p.is_dir()):
        d.chmod(0o755)

    arch = architecture(opt / "wheels")
    size_kib = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) // 1024
    debian = root / "DEBIAN"
    write(debian / "control",
          f"Package: {PACKAGE}\nVersion: {version}\nArchitecture: {arch}\nMaintainer: {MAINTAINER}\n"
          f"Installed-Size: {size_kib}\nDepends: {python_depends(python)}\nSection: net\nPriority: optional\n"
          "Homepage: https://gridwire.example.org\n"
          "Description: Gridwire concentrator: meters to the cloud over MQTT\n"
          " The Gridwire concentrator reads the meters wired to it (P1, DLMS/COSEM,\n"
          " Modbus), keeps every reading in a durable outbox and forwards them to the\n"
          " platform over MQTT with mutual TLS. It runs as the systemd service\n"
          " gridwire-concentrator from a virtualenv in /opt/gridwire.\n")
    write(debian / "conffiles", "/etc/gridwire/concentrator.toml\n")
    for script in ("postinst", "prerm", "postrm"):
        install(HERE / script, debian / script, 0o755)
    sums = "".join(f"{hashlib.md5(p.read_bytes()).hexdigest()}  {p.relative_to(root)}\n"
                   for p in sorted(root.rglob("*")) if p.is_file() and debian not in p.parents)
    write(debian / "md5sums", sums)
    debian.chmod(0o755)
    return arch


def build(out: Path, *, version: str | None = None, python: str = sys.executable) -> tuple[Path, Path]:
    """Build the .deb and the offline bundle into ``out``; returns both paths."""
    version = version or project_version()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gridwire-deb-") as tmp:
        wheels = Path(tmp) / "wheels"
        build_wheels(python, wheels)
        root = Path(tmp) / "root"
        root.mkdir(mode=0o755)
        arch = stage_tree(root, wheels, version, python)
        deb = out / f"{PACKAGE}_{version}_{arch}.deb"
        subprocess.run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(root), str(deb)],
                       check=True, stdout=subprocess.DEVNULL)
        bundle = out / f"{PACKAGE}_{version}_{arch}.bundle.tar"
        members = [deb, *sorted(wheels.glob("*.whl"))]
        sums = "".join(f"{hashlib.sha256(m.read_bytes()).hexdigest()}  "
                       f"{m.name if m == deb else 'wheels/' + m.name}\n" for m in members)
        (Path(tmp) / "SHA256SUMS").write_text(sums)
        with tarfile.open(bundle, "w") as tar:
            tar.add(deb, arcname=deb.name)
            for whl in members[1:]:
                tar.add(whl, arcname=f"wheels/{whl.name}")
            tar.add(Path(tmp) / "SHA256SUMS", arcname="SHA256SUMS")
    return deb, bundle


SOFTWARE_ENTRY = """\
#!/bin/sh
# Gridwire concentrator {version}: a tree an over-the-air update unpacked (docs/FIRMWARE.md).
tree=$(cd "$(dirname "$0")/.." && pwd -P)
# -P: the working directory is not put on the path, so only the tree's code runs.
PYTHONPATH="$tree/lib" exec {interpreter} -P -m gridwire "$@"
"""


def software_image(bundle: Path, out: Path, *, interpreter: str = "/usr/bin/python3",
                   python: str = sys.executable) -> Path:
    """The over-the-air image of the software in ``bundle`` (its wheels), run by ``interpreter``
    on the appliance; ``python`` (the same version) installs the wheels here."""
    version = project_version()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gridwire-ota-") as tmp:
        with tarfile.open(bundle) as tar:
            wheels = [m for m in tar.getmembers() if m.name.startswith("wheels/") and m.name.endswith(".whl")]
            tar.extractall(tmp, members=wheels)  # noqa: S202 - our own bundle, wheels only
        tree = Path(tmp) / "tree"
        subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-index", "--no-compile",
                        "--find-links", str(Path(tmp) / "wheels"), "--target", str(tree / "lib"),
                        f"gridwire[edge]=={version}"], check=True)
        write(tree / "bin" / "gridwire", SOFTWARE_ENTRY.format(version=version, interpreter=interpreter), 0o755)
        image = out / f"{PACKAGE}-software_{version}.tar.gz"
        with tarfile.open(image, "w:gz") as tar:
            for path in sorted(tree.rglob("*")):
                if "__pycache__" not in path.parts:
                    tar.add(path, arcname=str(path.relative_to(tree)), recursive=False)
    return image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "dist")
    parser.add_argument("--version", help="Debian version (default: the project's)")
    parser.add_argument("--python", default=sys.executable, help="The target Python (default: this one)")
    parser.add_argument("--software", type=Path, metavar="BUNDLE",
                        help="Instead: the over-the-air image of the concentrator software in BUNDLE")
    parser.add_argument("--interpreter", default="/usr/bin/python3",
                        help="With --software: the appliance's Python that runs the image")
    args = parser.parse_args()
    if args.software:
        image = software_image(args.software, args.out, interpreter=args.interpreter, python=args.python)
        print(f"{image} ({image.stat().st_size / 1e6:.1f} MB)")
        return
    deb, bundle = build(args.out, version=args.version, python=args.python)
    print(f"{deb} ({deb.stat().st_size / 1e6:.1f} MB)")
    print(f"{bundle} ({bundle.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
