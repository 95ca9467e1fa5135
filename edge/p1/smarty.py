"""The Luxembourg Smarty P1 port: each DSMR telegram travels AES-128-GCM encrypted, as a DLMS
general-glo-ciphering APDU, and is decrypted with the key the grid operator gives the customer.

A frame on the wire::

    DB | 08 <system title, 8> | 82 <length, 2> | 30 (security control) | <frame counter, 4>
       | <ciphertext> | <GCM tag, 12>

``length`` counts everything after it. The GCM nonce is the system title followed by the frame
counter; the additional authenticated data is the security control byte followed by the
authentication key. With no authentication key the tag cannot be checked: the frame is
decrypted without it (GCM is CTR mode underneath, the counter starting at 2) and the telegram's
own CRC-16 is what guards it. Pure code (cryptography's AES), no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from edge.p1.telegram import MalformedTelegram, TelegramError

GENERAL_GLO_CIPHERING = 0xDB
SECURITY_CONTROL = 0x30  # authenticated and encrypted, security suite 0
TAG_LENGTH = 12
_HEADER = 1 + 1 + 8 + 3  # tag, title length, title, 0x82 + length
MAX_FRAME = 8192


class SmartyDecryptionError(TelegramError):
    """A Smarty frame that does not decrypt with the configured keys (wrong key, or damaged)."""


def encrypt_telegram(telegram: bytes, *, key: bytes, system_title: bytes, frame_counter: int,
                     authentication_key: bytes) -> bytes:
    """The frame a Smarty meter sends for ``telegram`` (for the simulator and tests)."""
    if len(system_title) != 8:
        raise ValueError("a system title is 8 bytes")
    encryptor = Cipher(algorithms.AES(key), modes.GCM(_nonce(system_title, frame_counter))).encryptor()
    encryptor.authenticate_additional_data(bytes([SECURITY_CONTROL]) + authentication_key)
    ciphertext = encryptor.update(telegram) + encryptor.finalize()
    body = bytes([SECURITY_CONTROL]) + frame_counter.to_bytes(4, "big") + ciphertext + encryptor.tag[:TAG_LENGTH]
    return bytes([GENERAL_GLO_CIPHERING, 8]) + system_title + b"\x82" + len(body).to_bytes(2, "big") + body


def decrypt_frame(frame: bytes, *, key: bytes, authentication_key: bytes | None) -> bytes:
    """The telegram inside one Smarty frame; SmartyDecryptionError if the keys do not fit it."""
    if len(frame) < _HEADER + 5 + TAG_LENGTH or frame[0] != GENERAL_GLO_CIPHERING or frame[1] != 8 \
            or frame[10] != 0x82:
        raise MalformedTelegram("not a Smarty frame (general-glo-ciphering with an 8-byte system title)")
    length = int.from_bytes(frame[11:13], "big")
    body = frame[13:13 + length]
    if len(body) != length:
        raise MalformedTelegram(f"Smarty frame says {length} bytes, has {len(body)}")
    control, counter = body[0], int.from_bytes(body[1:5], "big")
    if control != SECURITY_CONTROL:
        raise MalformedTelegram(f"Smarty frame security control {control:#04x}; only 0x30 is known")
    ciphertext, tag = body[5:-TAG_LENGTH], body[-TAG_LENGTH:]
    nonce = _nonce(frame[2:10], counter)
    if authentication_key is None:
        # CTR with GCM's first counter block for the data: J0 + 1 = nonce || 00000002.
        decryptor = Cipher(algorithms.AES(key), modes.CTR(nonce + (2).to_bytes(4, "big"))).decryptor()
        plain = decryptor.update(ciphertext) + decryptor.finalize()
        if not plain.startswith(b"/"):
            raise SmartyDecryptionError("Smarty frame does not decrypt to a telegram: wrong key?")
        return plain
    decryptor = Cipher(algorithms.AES(key), modes.GCM(nonce, tag, min_tag_length=TAG_LENGTH)).decryptor()
    decryptor.authenticate_additional_data(bytes([control]) + authentication_key)
    try:
        return decryptor.update(ciphertext) + decryptor.finalize()
    except InvalidTag:
        raise SmartyDecryptionError("Smarty frame's authentication tag does not match: wrong keys?") from None


def _nonce(system_title: bytes, counter: int) -> bytes:
    return system_title + counter.to_bytes(4, "big")


@dataclass
class SmartyFramer:
    """Cut a byte stream into Smarty frames by their length field (the binary counterpart of
    :class:`edge.p1.framer.TelegramFramer`); bytes before a frame start are dropped."""

    max_size: int = MAX_FRAME
    dropped_bytes: int = 0
    frames: int = 0
    _buf: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf
        buf += data
        out: list[bytes] = []
        while True:
            start = buf.find(bytes([GENERAL_GLO_CIPHERING, 8]))
            if start < 0:
                keep = 1 if buf[-1:] == bytes([GENERAL_GLO_CIPHERING]) else 0
                self._drop(len(buf) - keep)
                return out
            self._drop(start)
            if len(buf) < _HEADER:
                return out
            if buf[10] != 0x82:
                self._drop(1)
                continue
            size = _HEADER + int.from_bytes(buf[11:13], "big")
            if size > self.max_size:
                self._drop(1)
                continue
            if len(buf) < size:
                return out
            out.append(bytes(buf[:size]))
            del buf[:size]
            self.frames += 1

    def _drop(self, count: int) -> None:
        if count > 0:
            self.dropped_bytes += count
            del self._buf[:count]
