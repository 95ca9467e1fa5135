"""Ed25519 signing and verification of firmware manifests.

Signing keys stay offline (the `gridwire firmware sign` CLI); the cloud and the concentrators
hold only trusted public keys, keyed by `key_id_of(public_pem)`.

`cryptography` (about 7 MiB resident) is imported by the functions that sign or verify, not by
the module: a concentrator loads its trusted keys at start-up (their ids need only the key's
bytes) and loads `cryptography` with its first update (docs/FIRMWARE.md, "Memory").
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from broker.errors import Invalid
from broker.lean.firmware import FirmwareManifest as LeanManifest
from broker.lean.firmware import SignedManifest as LeanSigned

if TYPE_CHECKING:
    from broker.schemas.firmware import FirmwareManifest, SignedManifest
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

# An Ed25519 SubjectPublicKeyInfo in DER (RFC 8410) is these 12 bytes and the 32-byte key; DER
# has one encoding per value, so every Ed25519 public key PEM decodes to exactly this.
_ED25519_SPKI = bytes.fromhex("302a300506032b6570032100")
_PUBLIC_PEM = re.compile(rb"-----BEGIN PUBLIC KEY-----(.*?)-----END PUBLIC KEY-----", re.DOTALL)


class SignatureError(Invalid):
    """A signed manifest cannot be trusted; the message says why (unknown key, bad signature)."""


def generate_key() -> tuple[bytes, bytes]:
    """A new Ed25519 key pair as (private PEM, public PEM)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )
    return private_pem, _public_pem(private.public_key())


def key_id_of(public_pem: bytes) -> str:
    """Short hex id of a public key: the first 16 hex digits of sha256 over the raw key bytes."""
    return hashlib.sha256(_raw_public(public_pem)).hexdigest()[:16]


def _raw_public(public_pem: bytes) -> bytes:
    """The 32 bytes of an Ed25519 public key PEM, read without `cryptography`; ValueError as
    :func:`_load_public` would raise it."""
    match = _PUBLIC_PEM.search(public_pem)
    if match is None:
        raise ValueError("not a PEM public key")
    try:
        der = base64.b64decode(b"".join(match.group(1).split()), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not a PEM public key") from None
    if len(der) != len(_ED25519_SPKI) + 32 or not der.startswith(_ED25519_SPKI):
        raise ValueError("public key is not Ed25519")
    return der[len(_ED25519_SPKI):]


def public_key_of(private_pem: bytes) -> bytes:
    """The public PEM that belongs to a private PEM."""
    return _public_pem(_load_private(private_pem).public_key())


def sign(manifest: FirmwareManifest, private_pem: bytes) -> SignedManifest:
    """Sign the manifest's canonical bytes with an Ed25519 private key."""
    private = _load_private(private_pem)
    signature = private.sign(manifest.canonical_bytes())
    return _signed_class(manifest)(
        manifest=manifest,
        key_id=key_id_of(_public_pem(private.public_key())),
        signature=base64.b64encode(signature).decode("ascii"),
    )


def _signed_class(manifest: FirmwareManifest | LeanManifest) -> type:
    """The SignedManifest of the manifest's side: the concentrator's lean one, or the cloud's model
    (pydantic, imported here: a concentrator only verifies)."""
    if isinstance(manifest, LeanManifest):
        return LeanSigned
    from broker.schemas.firmware import SignedManifest

    return SignedManifest


def verify(signed: SignedManifest, trusted: Mapping[str, bytes]) -> FirmwareManifest:
    """The manifest if a trusted key signed it; SignatureError naming why otherwise."""
    from cryptography.exceptions import InvalidSignature

    public_pem = trusted.get(signed.key_id)
    if public_pem is None:
        raise SignatureError(f"unknown signing key {signed.key_id!r}: not among the trusted keys")
    try:
        signature = base64.b64decode(signed.signature, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError("signature is not valid base64") from exc
    try:
        _load_public(public_pem).verify(signature, signed.manifest.canonical_bytes())
    except InvalidSignature as exc:
        raise SignatureError(f"bad signature: manifest was not signed by key {signed.key_id!r}") from exc
    return signed.manifest


def load_trusted_keys(paths: list[Path]) -> dict[str, bytes]:
    """key_id -> public PEM from PEM files and directories of `*.pem` files."""
    trusted: dict[str, bytes] = {}
    for path in paths:
        files = sorted(path.glob("*.pem")) if path.is_dir() else [path]
        for file in files:
            pem = file.read_bytes()
            try:
                trusted[key_id_of(pem)] = pem
            except ValueError as exc:
                raise ValueError(f"{file}: not an Ed25519 public key PEM") from exc
    return trusted


def _public_pem(public: Ed25519PublicKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return public.public_bytes(
        encoding=serialization.Encoding.PEM, format=serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _load_private(private_pem: bytes) -> Ed25519PrivateKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(private_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError("not an unencrypted PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("signing key is not Ed25519")
    return key


def _load_public(public_pem: bytes) -> Ed25519PublicKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = serialization.load_pem_public_key(public_pem)
    except (ValueError, TypeError) as exc:
        raise ValueError("not a PEM public key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("public key is not Ed25519")
    return key
