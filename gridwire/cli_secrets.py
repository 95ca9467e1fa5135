"""``gridwire secrets``: the sealing key for device secrets at rest, and sealing what is in clear.

``new-key`` prints a fresh key ring entry for ``GRIDWIRE_SECRETS_KEY`` (the cloud) or a
concentrator's ``secrets_key_file``. ``seal-config`` seals, in place, the secrets a concentrator
config holds in clear. ``reseal`` seals the registry's secrets (device secrets, organisations'
webhook secrets) with the ring's first key: what was in clear (stored by an older release), and
what an older key sealed (rotation: put the new key first, keep the old one after it, reseal,
then drop the old one).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path
from typing import Annotated, Optional

import typer

secrets_app = typer.Typer(no_args_is_help=True,
                          help="Device and webhook secrets at rest: the sealing key, sealing in place.")

KeyOption = Annotated[Optional[Path], typer.Option(
    "--key-file", help="The sealing key ring file (default: GRIDWIRE_SECRETS_KEY, or the config's secrets_key_file).")]


def _ring(key_file: Path | None, fallback: Path | None = None):  # noqa: ANN202 - a KeyRing
    from broker.sealing import KeyRing, SealingError

    try:
        if key_file is not None:
            return KeyRing.from_file(key_file)
        ring = KeyRing.from_environment()
        if ring is None and fallback is not None:
            ring = KeyRing.from_file(fallback)
    except SealingError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if ring is None:
        typer.echo("error: no sealing key: give --key-file or set GRIDWIRE_SECRETS_KEY "
                   "(make one with `gridwire secrets new-key`)", err=True)
        raise typer.Exit(2)
    return ring


@secrets_app.command("new-key")
def new_key(key_id: Annotated[Optional[str], typer.Option("--id", help="The key's id (default: random).")] = None,
            out: Annotated[Optional[Path], typer.Option(help="Write it to this file (mode 0600) instead of stdout.")]
            = None) -> None:
    """Print a new sealing key, ``<id>:<base64url 32 bytes>``."""
    from broker.sealing import SealingError, new_key as make

    try:
        key = make(key_id)
    except SealingError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if out is None:
        typer.echo(key)
        return
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        typer.echo(f"error: {out} exists; a sealing key is never overwritten (rotate: add a new one first)", err=True)
        raise typer.Exit(2) from None
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    typer.echo(f"{out}: sealing key {key.split(':')[0]}")


@secrets_app.command("seal-config")
def seal_config(config: Annotated[Path, typer.Argument(help="The concentrator's TOML config file.")],
                key_file: KeyOption = None) -> None:
    """Seal the secrets a concentrator config holds in clear (broker password, DLMS and Smarty keys), in place."""
    import tomllib

    from broker.sealing import SealingError
    from edge.config_secrets import open_secrets, seal_file_text

    text = config.read_text()
    named = tomllib.loads(text).get("secrets_key_file")
    fallback = None if not named else (Path(named) if Path(named).is_absolute() else config.parent / named)
    ring = _ring(key_file, fallback)
    sealed_text, count = seal_file_text(text, ring)
    try:  # every secret sealed and each opening for its place, before the file is replaced
        open_secrets(tomllib.loads(sealed_text), ring)
    except SealingError as exc:
        typer.echo(f"error: {config}: {exc}; the file is unchanged", err=True)
        raise typer.Exit(2) from exc
    with tempfile.NamedTemporaryFile("w", dir=config.parent, prefix=f".{config.name}.", delete=False) as tmp:
        tmp.write(sealed_text)
    os.chmod(tmp.name, config.stat().st_mode & 0o777)
    os.replace(tmp.name, config)
    typer.echo(f"{config}: {count} secret(s) sealed with key {ring.current}")


@secrets_app.command("reseal")
def reseal(url: Annotated[str, typer.Option("--url", envvar=["GRIDWIRE_DATABASE_URL", "GRIDWIRE_REGISTRY_URL"],
                                            help="The registry's database (SQLAlchemy async URL).")],
           key_file: KeyOption = None) -> None:
    """Seal the registry's device and webhook secrets with the ring's first key (those in clear, those of older keys)."""
    from cloud.registry import webhook_secrets
    from cloud.registry.db import create_engine
    from cloud.registry.secrets import DeviceSecrets

    ring = _ring(key_file)

    async def run() -> tuple[int, int]:
        engine = create_engine(url)
        try:
            return await DeviceSecrets(engine, ring).reseal(), await webhook_secrets.reseal(engine, ring)
        finally:
            await engine.dispose()

    devices, webhooks = asyncio.run(run())
    typer.echo(f"{devices} device secret value(s) and {webhooks} webhook secret(s) sealed with key {ring.current}")
