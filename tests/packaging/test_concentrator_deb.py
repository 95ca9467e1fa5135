"""The Debian package gridwire-concentrator (scripts/package_concentrator.py): lintian finds no
error, its contents are the expected layout with the edge wheels only, and it installs,
upgrades, re-configures, removes and purges in a throwaway root (``dpkg --root`` with the
maintainer scripts run outside a chroot, as DPKG_ROOT allows), where the installed venv's
``gridwire concentrator check`` accepts the default config and names its placeholders.

The package is built once per session (about a minute: ``pip wheel`` of the edge extra)."""

from __future__ import annotations

import hashlib
import re
import shutil
import tarfile
from pathlib import Path

from tests.packaging.conftest import PACKAGE, dpkg, run, throwaway_root, tool


def test_lintian_finds_no_error_nor_warning(built: tuple[Path, Path]) -> None:
    deb, _ = built
    done = run(tool("lintian"), "--no-cfg", deb)
    tags = [line for line in done.stdout.splitlines() if re.match(r"[EW]: ", line)]
    assert tags == [] and done.returncode == 0, done.stdout + done.stderr


def test_contents_are_the_expected_layout_with_the_edge_wheels_only(built: tuple[Path, Path]) -> None:
    deb, _ = built
    listing = run(tool("dpkg-deb"), "--contents", deb).stdout.splitlines()
    entries = {line.split()[5].removeprefix(".") for line in listing}
    wheels = {Path(e).name for e in entries if e.endswith(".whl")}
    files = {e for e in entries if not e.endswith("/") and not e.endswith(".whl")}
    assert files == {
        "/etc/gridwire/concentrator.toml",
        "/lib/systemd/system/gridwire-concentrator.service",
        "/opt/gridwire/lib/make-venv",
        "/opt/gridwire/share/concentrator.example.toml",
        "/opt/gridwire/wheels/REQUIREMENT",
        "/usr/lib/sysusers.d/gridwire.conf",
        "/usr/lib/tmpfiles.d/gridwire.conf",
        "/usr/share/doc/gridwire-concentrator/changelog.gz",
        "/usr/share/doc/gridwire-concentrator/copyright",
        "/usr/share/lintian/overrides/gridwire-concentrator",
    }
    names = {re.split(r"-\d", w, maxsplit=1)[0].lower().replace("_", "-") for w in wheels}
    assert {"gridwire", "gurux-dlms", "pyserial", "pymodbus", "pydantic", "pydantic-core", "typer"} <= names
    # The edge extra only: no cloud package, nothing Apache-2.0-only or LGPLv3 beside gurux-dlms.
    assert not names & {"fastapi", "uvicorn", "sqlalchemy", "alembic", "asyncpg", "httpx", "pyjwt", "msgspec"}
    # Every file root's, modes as lintian wants them; the config is a conffile.
    assert all(" root/root " in line for line in listing)
    assert next(line for line in listing if line.endswith("/make-venv")).startswith("-rwxr-xr-x")
    conffiles = run(tool("dpkg-deb"), "-I", deb, "conffiles").stdout.split()
    assert conffiles == ["/etc/gridwire/concentrator.toml"]
    depends = run(tool("dpkg-deb"), "-f", deb, "Depends").stdout
    assert "python3 (>= 3.11)" in depends and "python3-venv" in depends


def test_offline_bundle_holds_the_deb_and_every_wheel_it_needs(built: tuple[Path, Path]) -> None:
    deb, bundle = built
    with tarfile.open(bundle) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
    assert members[deb.name] == deb.read_bytes()
    listing = run(tool("dpkg-deb"), "--contents", deb).stdout
    in_deb = {Path(line.split()[5]).name for line in listing.splitlines() if line.endswith(".whl")}
    assert {Path(n).name for n in members if n.startswith("wheels/")} == in_deb
    sums = dict(reversed(line.split("  ")) for line in members["SHA256SUMS"].decode().splitlines())
    assert set(sums) == set(members) - {"SHA256SUMS"}
    assert all(hashlib.sha256(members[name]).hexdigest() == digest for name, digest in sums.items())


def test_install_upgrade_remove_purge_in_a_throwaway_root(built: tuple[Path, Path], tmp_path: Path) -> None:
    deb, _ = built
    root = throwaway_root(tmp_path)
    dpkg(root, "-i", deb)

    # The user, its groups and directories (sysusers.d, tmpfiles.d), and the venv from the wheels.
    assert re.search(r"^gridwire:x:\d+:\d+:[^:]*:/var/lib/gridwire:", (root / "etc/passwd").read_text(), re.M)
    assert re.search(r"^dialout:x:\d+:.*\bgridwire\b", (root / "etc/group").read_text(), re.M)
    assert (root / "var/lib/gridwire").is_dir() and (root / "etc/gridwire/tls").is_dir()
    gridwire = root / "opt/gridwire/venv/bin/gridwire"
    config = root / "etc/gridwire/concentrator.toml"
    check = run(gridwire, "concentrator", "check", config)
    assert check.returncode == 0, check.stderr
    assert "placeholders still to fill in: concentrator_id, broker.host, broker.cert_file, broker.key_file" \
        in check.stdout
    python = root / "opt/gridwire/venv/bin/python"
    assert run(python, "-c", "import gurux_dlms, pymodbus, serial, edge.concentrator").returncode == 0
    assert run(python, "-c", "import fastapi").returncode != 0   # the edge extra only

    # The unit as installed passes systemd-analyze verify with the installed venv.
    unit = tmp_path / "gridwire-concentrator.service"
    unit.write_text((root / "lib/systemd/system" / unit.name).read_text()
                    .replace("/opt/gridwire/venv/bin/gridwire", str(gridwire)))
    verify = run(tool("systemd-analyze"), "verify", unit, SYSTEMD_LOG_LEVEL="warning")
    assert verify.returncode == 0 and verify.stderr.strip() == "", verify.stderr

    # Configured by hand, readings in the outbox: an upgrade keeps both, and the venv.
    config.write_text(config.read_text().replace('concentrator_id = "CHANGE-ME"', 'concentrator_id = "sub-1"'))
    outbox = root / "var/lib/gridwire/outbox.sqlite"
    outbox.write_bytes(b"readings not yet forwarded")
    stamp = root / "opt/gridwire/venv/.wheels.sha256"
    built_at = stamp.stat().st_mtime_ns
    newer = _repack(deb, tmp_path / "newer", "0.1.0+1")
    dpkg(root, "-i", newer)
    assert 'concentrator_id = "sub-1"' in config.read_text()
    assert outbox.read_bytes() == b"readings not yet forwarded"
    assert "0.1.0+1" in dpkg(root, "-s", PACKAGE)
    assert stamp.stat().st_mtime_ns == built_at   # same wheels: the venv is not rebuilt

    # Maintainer scripts are idempotent: configuring twice changes nothing.
    before = _tree(root)
    postinst = root / "var/lib/dpkg/info" / f"{PACKAGE}.postinst"
    for _ in range(2):
        again = run(postinst, "configure", "0.1.0+1", DPKG_ROOT=str(root))
        assert again.returncode == 0, again.stderr
    assert _tree(root) == before

    # remove keeps the config and the outbox; purge removes them.
    dpkg(root, "--remove", PACKAGE)
    assert not (root / "opt/gridwire").exists()
    assert outbox.exists() and config.exists()
    postrm = tmp_path / "postrm"
    shutil.copy2(root / "var/lib/dpkg/info" / f"{PACKAGE}.postrm", postrm)
    dpkg(root, "--purge", PACKAGE)
    assert not (root / "etc/gridwire").exists() and not (root / "var/lib/gridwire").exists()
    assert run(postrm, "purge", DPKG_ROOT=str(root)).returncode == 0   # purging again is harmless


def _repack(deb: Path, work: Path, version: str) -> Path:
    """The same package under a newer version: what an upgrade installs."""
    tree = work / "tree"
    work.mkdir(parents=True)
    assert run(tool("dpkg-deb"), "-R", deb, tree).returncode == 0
    control = tree / "DEBIAN" / "control"
    control.write_text(re.sub(r"^Version: .*$", f"Version: {version}", control.read_text(), flags=re.M))
    out = work / f"{PACKAGE}_{version}.deb"
    done = run(tool("dpkg-deb"), "--root-owner-group", "-Zxz", "-z1", "--build", tree, out)
    assert done.returncode == 0, done.stderr
    return out


def _tree(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every path under ``root`` but dpkg's own database: its mode, owner and, for a file, its
    mtime (sysusers' lock and temporary files touch /etc itself)."""
    return {str(p.relative_to(root)): (s.st_mode, s.st_uid, 0 if p.is_dir() else s.st_mtime_ns)
            for p in root.rglob("*") if "var/lib/dpkg" not in str(p) and not p.name.startswith(".pwd")
            for s in [p.lstat()]}
