"""AES-GCM for DLMS ciphering from the `cryptography` package instead of gurux-dlms's pure Python.

gurux-dlms 1.0.203 ciphers every glo-/ded- APDU, every HLS-GMAC pass and every data
notification with ``GXDLMSChipperingStream``, an AES and GHASH written in Python: about a
millisecond per block, so a firmware image sent with HLS-GMAC moved at about a hundred blocks
a second. :func:`install` replaces the stream in ``gurux_dlms.GXDLMSChippering`` (the only
module that uses it for GCM) with :class:`NativeGcmStream`, which has the same interface and
does the work in OpenSSL (``cryptography`` is Apache-2.0 OR BSD-3-Clause; it is already a
dependency of the concentrator and is used under the BSD licence, which GPLv2 accepts).

Two differences from the stream it replaces, both deliberate:

- It checks the tag of a ciphered APDU it deciphers. gurux's ``decryptAesGcm`` runs the
  stream in *encrypt* mode over the ciphertext, so the tag it computes is over the plaintext
  and is never compared: a tampered or wrongly-keyed APDU deciphered to garbage instead of
  failing. Here a wrong tag raises ``ValueError("Decrypt failed. Invalid tag.")``, gurux's own
  message for a bad tag.
- AES key wrap (``iv`` is None: the key-transfer path of GXDLMSSecureClient) is left to the
  original class.
"""

from __future__ import annotations

import importlib
from typing import Any

TAG_SIZE = 12
_installed = False

# gurux's Security values: the security control byte's bits 4 and 5.
_AUTHENTICATION = 0x10
_ENCRYPTION = 0x20


def _first_counter_block(iv: bytes) -> bytes:
    # GCM with a 96-bit IV: J0 = IV || 00000001, and the payload's key stream starts at J0 + 1.
    return bytes(iv) + b"\x00\x00\x00\x02"


class NativeGcmStream:
    """GXDLMSChipperingStream's interface over OpenSSL's AES-GCM.

    gurux builds one per APDU, ``write``s the payload (none for authentication only, whose
    plaintext is in the additional data), calls ``flushFinalBlock`` for the output and reads
    ``tag`` (12 bytes). It passes a ``tag`` only when deciphering, which is how the two
    directions are told apart (gurux itself always passes ``forEncrypt=True``).
    """

    BLOCK_SIZE = 16
    TAG_SIZE = TAG_SIZE

    def __init__(self, security: Any, encrypt: bool, key: bytes, aad: bytes | None,
                 iv: bytes, tag: bytes | None) -> None:
        if tag and len(tag) != TAG_SIZE:
            raise ValueError("Invalid tag.")
        self.security = int(security or 0)
        self.key = bytes(key)
        self.aad = bytes(aad or b"")
        self.iv = bytes(iv)
        self.expected_tag = bytes(tag) if tag else None
        self.tag: bytes = bytes(TAG_SIZE)
        self._data = bytearray()

    tagsEquals = staticmethod(lambda tag1, tag2: bytes(tag1[:TAG_SIZE]) == bytes(tag2[:TAG_SIZE]))

    def write(self, data: Any) -> None:
        self._data += bytes(data)

    def flushFinalBlock(self) -> bytearray:
        # cryptography (about 7 MiB resident) loads with the first ciphered APDU: a concentrator
        # whose meters all use no security or LLS never loads it (docs/FIRMWARE.md, "Memory").
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        data = bytes(self._data)
        self._data = bytearray()
        if self.security == _ENCRYPTION:
            # Encryption only: the GCM key stream, no tag.
            ctr = Cipher(algorithms.AES(self.key), modes.CTR(_first_counter_block(self.iv))).encryptor()
            return bytearray(ctr.update(data) + ctr.finalize())
        if self.expected_tag is not None and self.security != _AUTHENTICATION:
            decryptor = Cipher(
                algorithms.AES(self.key), modes.GCM(self.iv, self.expected_tag, min_tag_length=TAG_SIZE)
            ).decryptor()
            decryptor.authenticate_additional_data(self.aad)
            plain = decryptor.update(data)
            try:
                plain += decryptor.finalize()
            except InvalidTag:
                raise ValueError("Decrypt failed. Invalid tag.") from None
            self.tag = self.expected_tag
            return bytearray(plain)
        encryptor = Cipher(algorithms.AES(self.key), modes.GCM(self.iv)).encryptor()
        encryptor.authenticate_additional_data(self.aad)
        out = encryptor.update(data) + encryptor.finalize()
        self.tag = encryptor.tag[:TAG_SIZE]
        return bytearray(out)


def install() -> None:
    """Make gurux-dlms's GCM ciphering use :class:`NativeGcmStream` (idempotent)."""
    global _installed
    if _installed:
        return
    # The package re-exports its classes under the modules' names, so take the module itself.
    module = importlib.import_module("gurux_dlms.GXDLMSChippering")
    original = module.GXDLMSChipperingStream

    class Stream(NativeGcmStream):
        def __new__(cls, security: Any, encrypt: bool, key: bytes, aad: Any, iv: Any, tag: Any) -> Any:
            if iv is None:  # AES key wrap: not GCM
                return original(security, encrypt, key, aad, iv, tag)
            return super().__new__(cls)

    module.GXDLMSChipperingStream = Stream
    _installed = True
