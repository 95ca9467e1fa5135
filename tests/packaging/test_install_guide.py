"""docs/INSTALL_CONCENTRATOR.md's first steps, run in a throwaway root: install the package
(``apt install ./gridwire-concentrator_*.deb`` is ``dpkg -i`` of it plus its dependencies, which
this machine has), then ``gridwire concentrator provision`` from the installed venv against a
real platform API and broker CA. Provisioning fills in the package's default config, hands the
service user its files, enables the unit in the root (``systemctl --root``), and a second run
changes nothing. ``concentrator check`` then accepts the config with no placeholder left."""

from __future__ import annotations

import asyncio
import re
import stat
import uuid
from pathlib import Path

from broker.pki import common_name
from edge.config import load_config
from tests.cloud.api.test_provisioning import INSTALLER, api, claim  # noqa: F401 - api is a fixture
from tests.packaging.conftest import REPO, dpkg, run, throwaway_root

GUIDE = REPO / "docs" / "INSTALL_CONCENTRATOR.md"


def first_shell_block(text: str) -> list[str]:
    block = re.search(r"```sh\n(.*?)```", text, re.S)
    assert block is not None, "the guide has no shell block"
    joined = re.sub(r"\\\n\s*", "", block.group(1))   # continuation lines
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.startswith("#")]


def test_the_guide_starts_with_the_package_then_provision() -> None:
    steps = first_shell_block(GUIDE.read_text())
    assert steps[0] == "sudo apt install ./gridwire-concentrator_*.deb"
    assert any("gridwire concentrator provision --api" in step for step in steps[1:])


async def test_install_then_provision_in_a_throwaway_root(built: tuple[Path, Path], api, tls_mosquitto,  # noqa: F811
                                                          tmp_path: Path) -> None:
    deb, _ = built
    base, _ = api
    root = throwaway_root(tmp_path)
    dpkg(root, "-i", deb)
    gridwire = root / "opt/gridwire/venv/bin/gridwire"
    config = root / "etc/gridwire/concentrator.toml"
    packaged = config.read_text()

    cid = f"cab-{uuid.uuid4().hex[:6]}"
    token = await claim(base, cid, INSTALLER)
    provision = [gridwire, "concentrator", "provision", "--api", base, "--root", root]
    done = await asyncio.to_thread(run, *provision, GRIDWIRE_CLAIM=token)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"provisioned concentrator {cid}" in done.stdout and "made here" in done.stdout
    assert f"enabled gridwire-concentrator.service in {root}" in done.stdout, done.stdout
    wants = root / "etc/systemd/system/multi-user.target.wants/gridwire-concentrator.service"
    assert wants.is_symlink() and wants.resolve().name == "gridwire-concentrator.service"

    # The package's config, with only the fields provisioning owns set, naming paths as the
    # appliance sees them; every comment kept.
    cfg = load_config(config)
    assert cfg.concentrator_id == cid and cfg.broker.port == tls_mosquitto.tls_port
    assert cfg.broker.key_file == Path("/etc/gridwire/tls/concentrator.key")
    assert [line for line in packaged.splitlines() if line.startswith("#")] == \
        [line for line in config.read_text().splitlines() if line.startswith("#")]
    tls = root / "etc/gridwire/tls"
    assert common_name(tls / "concentrator.pem") == cid

    # The service user's files: its own key (0600), the config readable by its group.
    uid, gid = (int(f) for f in re.search(r"^gridwire:x:(\d+):(\d+):", (root / "etc/passwd").read_text(),
                                          re.M).groups())  # type: ignore[union-attr]
    key = (tls / "concentrator.key").stat()
    assert (key.st_uid, key.st_gid, stat.S_IMODE(key.st_mode)) == (uid, gid, 0o600)
    conf = config.stat()
    assert (conf.st_uid, conf.st_gid, stat.S_IMODE(conf.st_mode)) == (0, gid, 0o640)

    check = run(gridwire, "concentrator", "check", config)
    assert check.returncode == 0, check.stderr
    assert f"concentrator {cid}, 0 meter(s): ok" in check.stdout and "placeholders" not in check.stdout

    # Safe to run again: the same key and certificate, the config untouched, still enabled.
    before = {p: p.read_bytes() for p in (tls / "concentrator.key", tls / "concentrator.pem", config)}
    again = await asyncio.to_thread(run, *provision, GRIDWIRE_CLAIM=token)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "kept" in again.stdout and f"kept {config}" in again.stdout
    assert {p: p.read_bytes() for p in before} == before
