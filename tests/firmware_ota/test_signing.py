"""Manifest signing: round trips, tampering, unknown keys."""

from __future__ import annotations

import base64
import hashlib
import string
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from broker.schemas.firmware import FirmwareManifest, SignedManifest
from firmware_ota.signing import SignatureError, generate_key, key_id_of, sign, verify
from tests.firmware_ota.conftest import make_manifest

_ID_CHARS = string.ascii_letters + string.digits + "._-"

manifests = st.builds(
    lambda **kw: FirmwareManifest(**kw),
    firmware_id=st.tuples(st.sampled_from(string.ascii_letters + string.digits),
                          st.text(_ID_CHARS, max_size=40)).map("".join),
    version=st.text(min_size=1, max_size=20),
    device_models=st.lists(st.text(min_size=1, max_size=20).filter(str.strip), min_size=1, max_size=5),
    image_identifier=st.text(min_size=1, max_size=40),
    size=st.integers(min_value=1, max_value=64 * 1024 * 1024),
    sha256=st.binary(min_size=32, max_size=32).map(bytes.hex),
    created=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                         timezones=st.sampled_from([UTC, timezone(timedelta(hours=2)),
                                                    timezone(timedelta(hours=-5, minutes=-30))])),
)


@settings(max_examples=60, deadline=None)
@given(manifest=manifests)
def test_manifest_round_trips_with_same_canonical_bytes(manifest: FirmwareManifest, keypair, trusted) -> None:
    signed = sign(manifest, keypair[0])
    again = SignedManifest.from_wire(signed.to_wire())
    assert again == signed
    assert again.manifest.canonical_bytes() == manifest.canonical_bytes()
    assert verify(again, trusted) == manifest


def test_wire_is_camel_case(signed: SignedManifest) -> None:
    wire = signed.to_wire().decode()
    for key in ("firmwareId", "deviceModels", "imageIdentifier", "keyId", "signature", "sha256"):
        assert f'"{key}"' in wire
    assert b'"firmwareId"' in signed.manifest.canonical_bytes()


def test_tampered_manifest_is_refused(signed: SignedManifest, trusted) -> None:
    tampered = signed.model_copy(update={"manifest": signed.manifest.model_copy(update={"version": "9.9.9"})})
    with pytest.raises(SignatureError, match="bad signature"):
        verify(tampered, trusted)


def test_tampered_signature_is_refused(signed: SignedManifest, trusted) -> None:
    raw = bytearray(base64.b64decode(signed.signature))
    raw[0] ^= 0x01
    bad = signed.model_copy(update={"signature": base64.b64encode(bytes(raw)).decode()})
    with pytest.raises(SignatureError, match="bad signature"):
        verify(bad, trusted)


def test_garbage_signature_is_refused(signed: SignedManifest, trusted) -> None:
    with pytest.raises(SignatureError, match="base64"):
        verify(signed.model_copy(update={"signature": "not*base64"}), trusted)


def test_unknown_key_is_refused(signed: SignedManifest, image: bytes, trusted) -> None:
    other_private, other_public = generate_key()
    with pytest.raises(SignatureError, match="unknown signing key"):
        verify(signed, {key_id_of(other_public): other_public})
    # Signed by a key whose id is forged to look trusted: the signature does not verify.
    forged = sign(make_manifest(image), other_private).model_copy(update={"key_id": signed.key_id})
    with pytest.raises(SignatureError, match="bad signature"):
        verify(forged, trusted)


def test_key_id_is_stable_short_hex(keypair) -> None:
    assert key_id_of(keypair[1]) == key_id_of(keypair[1])
    assert len(key_id_of(keypair[1])) == 16
    assert key_id_of(generate_key()[1]) != key_id_of(keypair[1])


def test_key_id_read_from_the_pem_is_the_sha256_of_the_raw_key(keypair) -> None:
    # key_id_of reads the key's bytes from the DER without cryptography (the concentrator loads
    # its trusted keys at start-up); cryptography's own reading of the same key agrees.
    from cryptography.hazmat.primitives import serialization

    raw = serialization.load_pem_public_key(keypair[1]).public_bytes(
        encoding=serialization.Encoding.Raw, format=serialization.PublicFormat.Raw)
    assert key_id_of(keypair[1]) == hashlib.sha256(raw).hexdigest()[:16]
    assert key_id_of(b"comment line\n" + keypair[1].replace(b"\n", b"\r\n")) == key_id_of(keypair[1])


def test_key_id_refuses_what_is_not_an_ed25519_public_key(keypair) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    p256 = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(ValueError, match="not Ed25519"):
        key_id_of(p256)
    with pytest.raises(ValueError, match="not a PEM public key"):
        key_id_of(keypair[0])  # the private key
    with pytest.raises(ValueError, match="not a PEM public key"):
        key_id_of(keypair[1].replace(b"A", b"*", 1))


@pytest.mark.parametrize("field,value", [
    ("firmware_id", "a/b"), ("firmware_id", "+"), ("firmware_id", ".hidden"), ("firmware_id", ""),
    ("device_models", []), ("size", 0), ("sha256", "xyz"),
])
def test_manifest_rejects_bad_fields(image: bytes, field: str, value: object) -> None:
    data = make_manifest(image).model_dump()
    data[field] = value
    with pytest.raises(ValidationError):
        FirmwareManifest(**data)


def test_manifest_needs_aware_time(image: bytes) -> None:
    data = make_manifest(image).model_dump()
    data["created"] = datetime(2026, 1, 1)
    with pytest.raises(ValidationError):
        FirmwareManifest(**data)


def test_cli_keygen_and_sign_write_a_manifest_the_public_key_verifies(tmp_path) -> None:
    from typer.testing import CliRunner

    from firmware_ota.signing import load_trusted_keys
    from gridwire.cli import app

    runner = CliRunner()
    made = runner.invoke(app, ["firmware", "keygen", "--out", str(tmp_path / "keys")])
    assert made.exit_code == 0, made.output
    assert (tmp_path / "keys" / "signing.key").stat().st_mode & 0o777 == 0o600
    again = runner.invoke(app, ["firmware", "keygen", "--out", str(tmp_path / "keys")])
    assert again.exit_code == 1 and "exists" in again.output
    image = tmp_path / "fw.bin"
    image.write_bytes(b"\x01\x02" * 500)
    signed_cli = runner.invoke(app, [
        "firmware", "sign", "--key", str(tmp_path / "keys" / "signing.key"), "--image", str(image),
        "--firmware-id", "sim-meter-2.1.0", "--version", "2.1.0", "--model", "SIM-DLMS", "--model", "SIM-2",
        "--image-identifier", "IMG-2.1.0"])
    assert signed_cli.exit_code == 0, signed_cli.output
    signed = SignedManifest.from_wire((tmp_path / "fw.bin.manifest.json").read_bytes())
    trusted = load_trusted_keys([tmp_path / "keys"])
    manifest = verify(signed, trusted)
    assert manifest.size == 1000 and manifest.device_models == ["SIM-DLMS", "SIM-2"]
    bad = runner.invoke(app, ["firmware", "sign", "--key", str(tmp_path / "keys" / "signing.key"), "--image",
                              str(image), "--firmware-id", "a/b", "--version", "1", "--model", "M",
                              "--image-identifier", "I"])
    assert bad.exit_code == 1 and "cannot sign" in bad.output
