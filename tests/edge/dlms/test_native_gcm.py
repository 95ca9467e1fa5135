"""The OpenSSL-backed GCM stream gives gurux-dlms byte for byte what its pure-Python stream gave,
and refuses what that stream let through: a ciphered APDU whose tag does not match."""

from __future__ import annotations

import importlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.dlms import gurux_fixes, native_gcm

gurux_fixes.apply()

PURE = importlib.import_module("gurux_dlms.GXDLMSChipperingStream").GXDLMSChipperingStream
CHIPPERING = importlib.import_module("gurux_dlms.GXDLMSChippering")

AUTHENTICATION, ENCRYPTION, AUTHENTICATION_ENCRYPTION = 0x10, 0x20, 0x30

keys = st.binary(min_size=16, max_size=16)
ivs = st.binary(min_size=12, max_size=12)
payloads = st.binary(max_size=300)


def pure(security: int, key: bytes, aad: bytes, iv: bytes, data: bytes) -> tuple[bytes, bytes]:
    stream = PURE(security, True, bytearray(key), bytearray(aad), bytearray(iv), None)
    if security != AUTHENTICATION:
        stream.write(bytearray(data))
    out = stream.flushFinalBlock()
    return bytes(out), bytes(stream.tag)


def native(security: int, key: bytes, aad: bytes, iv: bytes, data: bytes, tag: bytes | None = None):
    stream = native_gcm.NativeGcmStream(security, True, key, aad, iv, tag)
    if security != AUTHENTICATION:
        stream.write(data)
    out = stream.flushFinalBlock()
    return bytes(out), bytes(stream.tag)


def test_gurux_ciphering_uses_the_native_stream() -> None:
    stream = CHIPPERING.GXDLMSChipperingStream(AUTHENTICATION_ENCRYPTION, True, bytes(16), b"a", bytes(12), None)
    assert isinstance(stream, native_gcm.NativeGcmStream)
    # AES key wrap (no IV) stays with gurux's own class.
    assert isinstance(CHIPPERING.GXDLMSChipperingStream(None, True, bytes(16), None, None, 0), PURE)


@settings(max_examples=60, deadline=None)
@given(security=st.sampled_from([AUTHENTICATION, ENCRYPTION, AUTHENTICATION_ENCRYPTION]),
       key=keys, iv=ivs, aad=st.binary(min_size=1, max_size=64), data=payloads)
def test_native_ciphering_matches_gurux_pure_python(security, key, iv, aad, data) -> None:
    expected_out, expected_tag = pure(security, key, aad, iv, data)
    out, tag = native(security, key, aad, iv, data)
    assert out == expected_out
    if security != ENCRYPTION:
        assert tag == expected_tag and len(tag) == 12


@settings(max_examples=40, deadline=None)
@given(key=keys, iv=ivs, aad=st.binary(min_size=1, max_size=64), data=st.binary(min_size=1, max_size=300))
def test_deciphering_returns_the_plaintext_and_checks_the_tag(key, iv, aad, data) -> None:
    ciphertext, tag = native(AUTHENTICATION_ENCRYPTION, key, aad, iv, data)
    assert native(AUTHENTICATION_ENCRYPTION, key, aad, iv, ciphertext, tag)[0] == data

    flipped = bytes([ciphertext[0] ^ 0x01]) + ciphertext[1:]
    with pytest.raises(ValueError, match="Invalid tag"):
        native(AUTHENTICATION_ENCRYPTION, key, aad, iv, flipped, tag)
    with pytest.raises(ValueError, match="Invalid tag"):
        native(AUTHENTICATION_ENCRYPTION, bytes(b ^ 0xFF for b in key), aad, iv, ciphertext, tag)
    with pytest.raises(ValueError, match="Invalid tag"):
        native(AUTHENTICATION_ENCRYPTION, key, aad + b"x", iv, ciphertext, tag)


def test_a_tag_of_the_wrong_size_is_refused() -> None:
    with pytest.raises(ValueError, match="Invalid tag"):
        native_gcm.NativeGcmStream(AUTHENTICATION_ENCRYPTION, True, bytes(16), b"a", bytes(12), bytes(16))
