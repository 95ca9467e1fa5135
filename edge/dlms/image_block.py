"""image_block_transfer built and read by hand: the one APDU an image transfer sends thousands of times.

Pure code: bytes in, bytes out, no sockets and no gurux objects. An image of 1 MiB in blocks of
512 bytes is 2,048 ACTION requests per meter; gurux-dlms builds each through its generic
GXByteBuffer/GXDLMSLNParameters path and parses each answer the same way, which cost more
than the cipher and the socket together. The other image-transfer steps (association,
initiate, the block bitmap, verify, activate) stay with gurux; only the block and its answer
go through here. Both sides use it: :class:`edge.dlms.block_sender.BlockSender` on the
concentrator, :class:`edge.dlms.cosem_server.CosemServer` in the meter simulator.

The bytes (Green Book, xDLMS ACTION service, LN referencing)::

    action-request-normal  C3 01 <invoke-id-and-priority> 00 12 <OBIS, 6 bytes> 02 01
                           02 02 06 <block number, uint32> 09 <BER length> <block>
    action-response-normal C7 01 <invoke-id-and-priority> <action-result> 00

Ciphered with the global key (security suite 0, AES-GCM-128, 12-byte tag), either as the
service-specific glo-action-request/-response (CB / CF) or as general-glo-ciphering (DB),
which gurux uses once the association negotiated general protection::

    CB|CF <BER length> <SC> <IC, 4 bytes> <ciphertext> <tag>
    DB 08 <system title> <BER length> <SC> <IC, 4 bytes> <ciphertext> <tag>

SC is the security control byte (0x10 authentication, 0x20 encryption, 0x30 both); the IV is
the sender's system title and IC; the additional data is SC and the authentication key (and,
for authentication only, the plain APDU). The GCM work is OpenSSL's, through ``cryptography``
(see :mod:`edge.dlms.native_gcm` for the licence note).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from broker.errors import Invalid

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

IMAGE_TRANSFER_CLASS = 18
BLOCK_TRANSFER_METHOD = 2
ACTION_REQUEST = 0xC3
ACTION_RESPONSE = 0xC7
NORMAL = 0x01
GLO_ACTION_REQUEST = 0xCB
GLO_ACTION_RESPONSE = 0xCF
GENERAL_GLO_CIPHERING = 0xDB
WRAPPER_VERSION = b"\x00\x01"
WRAPPER_HEADER = 8
TAG_SIZE = 12
AUTHENTICATION = 0x10
ENCRYPTION = 0x20
AUTHENTICATED_ENCRYPTION = 0x30
SUCCESS = 0

_BLOCK_DESCRIPTOR_TAIL = bytes([BLOCK_TRANSFER_METHOD, 0x01, 0x02, 0x02, 0x06])  # method, params, structure{2}, uint32


class ApduError(Invalid):
    """The bytes are not the APDU expected (or a ciphered one fails its tag)."""


def ber_length(length: int) -> bytes:
    """A BER (A-XDR) length: one byte below 128, else 0x81, 0x82 or 0x84 and that many bytes."""
    if length < 0x80:
        return bytes((length,))
    if length < 0x100:
        return bytes((0x81, length))
    if length < 0x10000:
        return b"\x82" + length.to_bytes(2, "big")
    return b"\x84" + length.to_bytes(4, "big")


def read_ber_length(data: bytes, pos: int) -> tuple[int, int]:
    """(length, position after it) of the BER length at ``pos``."""
    first = data[pos]
    if first < 0x80:
        return first, pos + 1
    count = first & 0x7F
    if count == 0 or count > 4 or pos + 1 + count > len(data):
        raise ApduError("bad BER length")
    return int.from_bytes(data[pos + 1:pos + 1 + count], "big"), pos + 1 + count


def obis_bytes(obis: str) -> bytes:
    """``"0.0.44.0.0.255"`` as the 6 bytes of a COSEM instance id."""
    parts = [int(p) for p in obis.split(".")]
    if len(parts) != 6 or not all(0 <= p <= 255 for p in parts):
        raise ValueError(f"not an OBIS code: {obis!r}")
    return bytes(parts)


# --- the plain APDUs ----------------------------------------------------------------------------
def block_request(*, invoke: int, obis: bytes, number: int, block: bytes) -> bytes:
    """action-request-normal of image_block_transfer(number, block) on the image transfer ``obis``."""
    return b"".join((bytes((ACTION_REQUEST, NORMAL, invoke, 0, IMAGE_TRANSFER_CLASS)), obis, _BLOCK_DESCRIPTOR_TAIL,
                     number.to_bytes(4, "big"), b"\x09", ber_length(len(block)), block))


@dataclass(frozen=True)
class BlockRequest:
    invoke: int
    obis: bytes
    number: int
    block: bytes


def parse_block_request(apdu: bytes) -> BlockRequest | None:
    """The block request ``apdu`` carries, or None if it is any other APDU (for the generic path)."""
    if len(apdu) < 23 or apdu[0] != ACTION_REQUEST or apdu[1] != NORMAL or apdu[3] != 0 \
            or apdu[4] != IMAGE_TRANSFER_CLASS or apdu[11:16] != _BLOCK_DESCRIPTOR_TAIL or apdu[20] != 0x09:
        return None
    try:
        length, pos = read_ber_length(apdu, 21)
    except (ApduError, IndexError):
        return None
    if pos + length != len(apdu):
        return None
    return BlockRequest(invoke=apdu[2], obis=bytes(apdu[5:11]), number=int.from_bytes(apdu[16:20], "big"),
                        block=bytes(apdu[pos:]))


def action_response(*, invoke: int, result: int) -> bytes:
    """action-response-normal with ``result`` and no return parameters."""
    return bytes((ACTION_RESPONSE, NORMAL, invoke, result, 0))


def parse_action_response(apdu: bytes) -> tuple[int, int]:
    """(invoke-id-and-priority, action-result) of an action-response-normal."""
    if len(apdu) < 4 or apdu[0] != ACTION_RESPONSE or apdu[1] != NORMAL:
        raise ApduError(f"not an action-response-normal (tag 0x{apdu[:1].hex() or '--'})")
    return apdu[2], apdu[3]


def wrapper_frame(*, source: int, destination: int, apdu: bytes) -> bytes:
    """A DLMS WRAPPER (IEC 62056-47) frame: version, source and destination wPort, length."""
    return b"".join((WRAPPER_VERSION, source.to_bytes(2, "big"), destination.to_bytes(2, "big"),
                     len(apdu).to_bytes(2, "big"), apdu))


# --- ciphering ----------------------------------------------------------------------------------
@dataclass
class GloCipher:
    """Global-key ciphering (suite 0) of one side: its system title, keys and security."""

    security: int
    system_title: bytes
    block_cipher_key: bytes
    authentication_key: bytes
    _aead: AESGCM | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.security not in (AUTHENTICATION, ENCRYPTION, AUTHENTICATED_ENCRYPTION):
            raise ValueError(f"security control 0x{self.security:02x} is not suite-0 glo ciphering")
        # cryptography loads with the first ciphered transfer, not with the concentrator
        # (docs/FIRMWARE.md, "Memory").
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._aead = AESGCM(self.block_cipher_key)

    def protect(self, apdu: bytes, *, tag: int, invocation_counter: int) -> bytes:
        """``apdu`` ciphered with this side's title and ``invocation_counter``, as ``tag`` (CB, CF or DB)."""
        sc = self.security
        ic = invocation_counter.to_bytes(4, "big")
        iv = self.system_title + ic
        assert self._aead is not None
        if sc == AUTHENTICATED_ENCRYPTION:
            body = self._aead.encrypt(iv, apdu, bytes((sc,)) + self.authentication_key)[:-16 + TAG_SIZE]
        elif sc == AUTHENTICATION:
            body = apdu + self._aead.encrypt(iv, b"", bytes((sc,)) + self.authentication_key + apdu)[:TAG_SIZE]
        else:
            body = self._key_stream_xor(iv, apdu)
        content = b"".join((bytes((sc,)), ic, body))
        if tag == GENERAL_GLO_CIPHERING:
            return b"".join((bytes((tag,)), ber_length(len(self.system_title)), self.system_title,
                             ber_length(len(content)), content))
        return b"".join((bytes((tag,)), ber_length(len(content)), content))

    def unprotect(self, ciphered: bytes, *, peer_title: bytes) -> tuple[int, int, bytes]:
        """(tag, invocation counter, plain APDU) of a CB/CF/DB APDU from the peer with ``peer_title``.

        Raises :class:`ApduError` when the security control differs from this side's, the
        system title (of a general-glo APDU) is not the peer's, or the tag does not match.
        """
        tag = ciphered[0]
        pos = 1
        try:
            if tag == GENERAL_GLO_CIPHERING:
                title_length, pos = read_ber_length(ciphered, pos)
                title = ciphered[pos:pos + title_length]
                pos += title_length
                if title != peer_title:
                    raise ApduError("general-glo-ciphering from another system title")
            length, pos = read_ber_length(ciphered, pos)
        except IndexError:
            raise ApduError("truncated ciphered APDU") from None
        if pos + length != len(ciphered) or length < 5:
            raise ApduError("ciphered APDU length does not match")
        sc = ciphered[pos]
        if sc != self.security:
            raise ApduError(f"security control 0x{sc:02x}, expected 0x{self.security:02x}")
        ic = int.from_bytes(ciphered[pos + 1:pos + 5], "big")
        iv = peer_title + ciphered[pos + 1:pos + 5]
        body = ciphered[pos + 5:]
        if sc == ENCRYPTION:
            return tag, ic, self._key_stream_xor(iv, body)
        if len(body) < TAG_SIZE:
            raise ApduError("ciphered APDU shorter than its tag")
        data, received = body[:-TAG_SIZE], body[-TAG_SIZE:]
        if sc == AUTHENTICATION:
            assert self._aead is not None
            expected = self._aead.encrypt(iv, b"", bytes((sc,)) + self.authentication_key + data)[:TAG_SIZE]
            if not hmac.compare_digest(expected, received):
                raise ApduError("invalid tag")
            return tag, ic, data
        # Deciphered with GCM's key stream, then the tag checked by ciphering the plain text again
        # (the same cipher text and its full tag): two calls into OpenSSL, where a GCM decryptor
        # taking a 12-byte tag is four Python objects per APDU (8.8 -> 2.5 us for a 512-byte block).
        plain = self._key_stream_xor(iv, data)
        aad = bytes((sc,)) + self.authentication_key
        assert self._aead is not None
        expected = self._aead.encrypt(iv, plain, aad)[-16:-16 + TAG_SIZE]
        if not hmac.compare_digest(expected, received):
            raise ApduError("invalid tag")
        return tag, ic, plain

    def _key_stream_xor(self, iv: bytes, data: bytes) -> bytes:
        """``data`` XOR GCM's key stream for ``iv`` (counter blocks from J0 + 1 = IV || 00000002):
        ciphering and deciphering alike, no tag (AES-GCM's cipher text is exactly that)."""
        assert self._aead is not None
        return self._aead.encrypt(iv, data, None)[:len(data)]
