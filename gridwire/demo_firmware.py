"""Firmware over the air in the demo: its signing key and its recipe.

The demo makes one Ed25519 signing key pair on its first run (``<dir>/firmware-keys/``:
``signing.key``, mode 0600, and ``<key id>.pem``) and keeps it. The platform and the demo
concentrator trust that directory's public key, so an image signed with ``signing.key`` can be
uploaded and rolled out to the demo's simulated DLMS meters, whose model (as the registry and
the concentrator both name it) is :data:`DLMS_MODEL`. A real deployment keeps the private key
offline (docs/FIRMWARE.md); the demo keeps it next to its data so the recipe works as printed.
"""

from __future__ import annotations

import asyncio
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from firmware_ota.signing import generate_key, key_id_of, public_key_of
from gridwire.cli_common import gridwire_command

# The model the demo's simulated DLMS meters have in the registry and in the concentrator config.
DLMS_MODEL = "GW-SIM-DLMS"
# What the recipe rolls out (the simulated meters start at 1.0.0).
RECIPE_VERSION = "1.1.0"


@dataclass(frozen=True, slots=True)
class DemoSigningKey:
    private_file: Path
    public_file: Path

    @property
    def trusted_dir(self) -> Path:
        """The directory of ``*.pem`` public keys the platform and the concentrator trust."""
        return self.public_file.parent


def ensure_signing_key(directory: Path) -> DemoSigningKey:
    """The demo's signing key pair under ``directory``: made on the first run, reused after."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    private_file = directory / "signing.key"
    if private_file.exists():
        public = public_key_of(private_file.read_bytes())
    else:
        private, public = generate_key()
        fd = os.open(private_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(private)
    public_file = directory / f"{key_id_of(public)}.pem"
    if not public_file.exists():
        public_file.write_bytes(public)
    return DemoSigningKey(private_file=private_file, public_file=public_file)


def recipe(*, api_port: int, token: str, key: DemoSigningKey, org: str, ca_file: Path) -> list[str]:
    """The announcement's lines that roll a signed image out to the demo's DLMS meters.

    Each command line works pasted as printed into a fresh shell (tests/test_demo.py runs them so)."""
    api = f"https://127.0.0.1:{api_port}"
    ca = shlex.quote(str(ca_file))
    auth = f"--cacert {ca} -H 'Authorization: Bearer {token}'"
    firmware_id = f"demo-meter-{RECIPE_VERSION}"
    body = ('{"name": "demo rollout", "firmwareId": "%s", "allDevicesOf": "%s", "start": true}'
            % (firmware_id, org))
    pad = " " * 14
    key_file = shlex.quote(str(key.private_file))
    gridwire = gridwire_command()
    return [
        f"  firmware    roll a signed image out to the DLMS meters (model {DLMS_MODEL}); signing key "
        f"{key.private_file}:",
        f"{pad}$ {gridwire} sim firmware-image --version {RECIPE_VERSION} --out fw.bin",
        f"{pad}$ {gridwire} firmware sign --key {key_file} --image fw.bin --firmware-id {firmware_id} "
        f"--version {RECIPE_VERSION} --model {DLMS_MODEL} --image-identifier DEMO-{RECIPE_VERSION}",
        f"{pad}$ {gridwire} firmware upload --image fw.bin --manifest fw.bin.manifest.json --api {api} "
        f"--api-ca {ca} --token {token}",
        f"{pad}$ curl -s -X POST {api}/v1/campaigns {auth} -H 'Content-Type: application/json' -d '{body}'",
        f"{pad}$ curl -s {api}/v1/campaigns/CAMPAIGN_ID/status {auth}",
        f"{pad}  (CAMPAIGN_ID: the \"id\" the POST answers; done when its state is FINISHED with every meter "
        "SUCCEEDED;",
        f"{pad}   a 409 on upload after a restart of the demo: that firmware is stored already, go on)",
    ]
