"""Command line for firmware: ``gridwire firmware keygen|sign|upload``.

Keys are made and used offline, on the release engineer's machine: ``keygen`` writes a key
pair, ``sign`` writes the signed manifest of an image, ``upload`` sends image and manifest to
the platform API. The cloud only ever holds the public key (GRIDWIRE_FIRMWARE_TRUSTED_KEYS).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Optional

import typer

# The manifest models (pydantic) and the signing (cryptography) are imported by the commands that
# use them: the concentrator's `gridwire concentrator run` builds this app too, and should not
# carry them (docs/FIRMWARE.md, "Memory").

firmware_app = typer.Typer(no_args_is_help=True, help="Firmware: signing keys, signed manifests, uploads.")


@firmware_app.callback()
def firmware() -> None:
    """Firmware: signing keys, signed manifests, uploads."""


@firmware_app.command("keygen")
def keygen(out: Annotated[Path, typer.Option("--out", help="Directory for signing.key and <key id>.pem.")],
           force: Annotated[bool, typer.Option(help="Overwrite an existing signing.key.")] = False) -> None:
    """Make an Ed25519 signing key pair: keep signing.key offline; give the .pem to the cloud and
    the concentrators as a trusted key."""
    from firmware_ota.signing import generate_key, key_id_of

    out.mkdir(parents=True, exist_ok=True)
    private_file = out / "signing.key"
    if private_file.exists() and not force:
        typer.echo(f"{private_file} exists; use --force to replace it", err=True)
        raise typer.Exit(code=1)
    private, public = generate_key()
    fd = os.open(private_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(private)
    key_id = key_id_of(public)
    (out / f"{key_id}.pem").write_bytes(public)
    typer.echo(f"key id {key_id}: private key {private_file}, public key {out / f'{key_id}.pem'}")


@firmware_app.command("sign")
def sign_command(
    key: Annotated[Path, typer.Option("--key", help="The private signing key (PEM).")],
    image: Annotated[Path, typer.Option("--image", help="The firmware image file.")],
    firmware_id: Annotated[str, typer.Option("--firmware-id", help="Id, e.g. sim-meter-2.1.0.")],
    version: Annotated[str, typer.Option("--version", help="What the device reports after activation.")],
    model: Annotated[list[str], typer.Option("--model", help="A device model it fits (repeat for more).")],
    image_identifier: Annotated[str, typer.Option("--image-identifier", help="DLMS image_identifier.")],
    out: Annotated[Path | None, typer.Option("--out", help="Where to write the signed manifest JSON "
                                                           "(default: <image>.manifest.json).")] = None,
    kind: Annotated[str, typer.Option("--kind", help="meter-firmware, or concentrator-software for a "
                                                     "concentrator's own software (a .tar.gz of its tree).")]
        = "meter-firmware",
) -> None:
    """Write the signed manifest of a firmware image."""
    from pydantic import ValidationError

    from broker.schemas.firmware import FirmwareManifest, created_now
    from firmware_ota.signing import sign

    data = image.read_bytes()
    try:
        manifest = FirmwareManifest(firmware_id=firmware_id, version=version, device_models=model,
                                    image_identifier=image_identifier, size=len(data),
                                    sha256=hashlib.sha256(data).hexdigest(), created=created_now(),
                                    kind=kind)
        signed = sign(manifest, key.read_bytes())
    except (ValidationError, ValueError) as exc:
        typer.echo(f"cannot sign: {exc}", err=True)
        raise typer.Exit(code=1) from exc
    target = out or image.with_name(image.name + ".manifest.json")
    target.write_text(json.dumps(signed.model_dump(mode="json", by_alias=True), indent=2) + "\n")
    typer.echo(f"wrote {target} (firmware {firmware_id}, {len(data)} bytes, key {signed.key_id})")


@firmware_app.command("upload")
def upload(
    image: Annotated[Path, typer.Option("--image", help="The firmware image file.")],
    manifest: Annotated[Path, typer.Option("--manifest", help="Its signed manifest JSON (from `sign`).")],
    api: Annotated[str, typer.Option("--api", envvar="GRIDWIRE_API_URL", help="Platform API base URL.")]
    = "https://127.0.0.1:8080",
    api_ca: Annotated[Optional[Path], typer.Option("--api-ca", envvar="GRIDWIRE_API_CA",
                                                   help="CA certificate the API's HTTPS certificate is checked "
                                                        "against (default: the system's).")] = None,
    token: Annotated[str, typer.Option("--token", envvar="GRIDWIRE_API_TOKEN",
                                       help="A platform administrator's bearer token.")] = "",
) -> None:
    """Upload an image and its signed manifest to the platform's firmware repository."""
    import httpx
    from pydantic import ValidationError

    from broker.schemas.firmware import SignedManifest

    try:
        signed = SignedManifest.from_wire(manifest.read_bytes())
    except ValidationError as exc:
        typer.echo(f"{manifest} is not a signed manifest: {exc}", err=True)
        raise typer.Exit(code=1) from exc
    body = json.dumps({"signedManifest": signed.model_dump(mode="json", by_alias=True),
                       "imageBase64": base64.b64encode(image.read_bytes()).decode()}).encode()
    headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    with UploadProgress(len(body), f"upload {signed.manifest.firmware_id}") as progress:
        try:
            answer = httpx.post(f"{api.rstrip('/')}/v1/firmware", content=progress.chunks(body), timeout=120,
                                headers=headers, verify=ssl.create_default_context(cafile=str(api_ca)) if api_ca else True)
        except httpx.HTTPError as exc:
            typer.echo(f"upload failed: {exc}", err=True)
            raise typer.Exit(code=1) from exc
    if answer.status_code >= 400:
        typer.echo(f"upload refused ({answer.status_code}): {answer.text}", err=True)
        raise typer.Exit(code=1)
    typer.echo(f"uploaded {signed.manifest.firmware_id} ({answer.status_code})")


class UploadProgress:
    """A progress bar with transfer rate and ETA on a terminal; a plain line per quarter otherwise."""

    # About twenty steps of 1-64 KiB: smooth for a small image, few syscalls for a large one.
    STEPS, SMALLEST, LARGEST = 20, 1024, 64 * 1024

    def __init__(self, total: int, what: str) -> None:
        from rich.console import Console
        from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                                   TransferSpeedColumn)

        self._total, self._what = total, what
        self._terminal = Console(stderr=True).is_terminal
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                  TransferSpeedColumn(), TimeRemainingColumn(), console=Console(stderr=True),
                                  disable=not self._terminal)
        self._task = self._progress.add_task(what, total=total)
        self._reported = 0

    def __enter__(self) -> UploadProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def chunks(self, body: bytes) -> Iterator[bytes]:
        """``body`` in slices, advancing the bar as each is handed to the connection."""
        size = max(self.SMALLEST, min(self.LARGEST, len(body) // self.STEPS))
        for start in range(0, len(body), size):
            piece = body[start:start + size]
            yield piece
            self.advance(start + len(piece))

    def advance(self, sent: int) -> None:
        self._progress.update(self._task, completed=sent)
        quarter = sent * 4 // max(1, self._total)
        if not self._terminal and quarter > self._reported:
            self._reported = quarter
            typer.echo(f"{self._what}: {sent}/{self._total} bytes ({quarter * 25}%)", err=True)
