"""image_block_transfer on an open association, built by :mod:`edge.dlms.image_block` instead of gurux.

gurux stays in charge of the association: its settings say who we are (addresses, invoke id,
system title, keys, the invocation counter) and which ciphering it would use. A
:class:`BlockSender` reads them, builds each block request itself, ciphers it in OpenSSL,
advances gurux's invocation counter exactly as gurux would, and (on WRAPPER) reads the answer
itself. On HDLC the APDU is ours but the frames are gurux's (its HDLC sequence numbers and
segmentation; a serial link's speed, not the CPU, bounds that path).

:meth:`BlockSender.for_link` returns None for what it does not build, so the caller keeps
gurux's generic ACTION for it: a dedicated key, a security suite other than 0, compression,
a gateway, the Italian standard, or a block too large for one PDU (gurux would split it into
action-request-with-pblock or general-block-transfer).
"""

from __future__ import annotations

from edge.dlms.client import DlmsAssociation
from edge.dlms.errors import DlmsProtocolError, DlmsResultError
from edge.dlms.image_block import (
    GENERAL_GLO_CIPHERING,
    GLO_ACTION_REQUEST,
    GLO_ACTION_RESPONSE,
    SUCCESS,
    ApduError,
    GloCipher,
    block_request,
    obis_bytes,
    parse_action_response,
    wrapper_frame,
)

from gurux_dlms.enums.Conformance import Conformance  # noqa: I001  (after edge.dlms.client applied the fixes)
from gurux_dlms.enums.InterfaceType import InterfaceType
from gurux_dlms.enums.Security import Security
from gurux_dlms.objects.enums.SecuritySuite import SecuritySuite
from gurux_dlms.enums.Standard import Standard
from gurux_dlms.GXByteBuffer import GXByteBuffer
from gurux_dlms.GXDLMS import GXDLMS
from gurux_dlms.internal._GXCommon import _GXCommon

# gurux's reserve for the ciphering header when it decides whether a request fits one PDU.
_CIPHERING_HEADER = 7 + 12 + 3
_DLMS_CONNECTED = 2  # ConnectionState.DLMS


class BlockSender:
    """Sends image blocks over one open :class:`DlmsAssociation`; see :meth:`for_link`."""

    def __init__(self, *, link: DlmsAssociation, obis: str, cipher: GloCipher | None, tag: int) -> None:
        self._link = link
        self._obis = obis_bytes(obis)
        self._cipher = cipher
        self._tag = tag
        settings = link.client.settings
        self._hdlc = settings.interfaceType != InterfaceType.WRAPPER

    @classmethod
    def for_link(cls, link: DlmsAssociation, *, obis: str, block_size: int) -> BlockSender | None:
        """A sender for blocks of ``block_size`` on ``link``, or None where gurux's generic ACTION must do it."""
        client = link.client
        settings = client.settings
        if settings.interfaceType not in (InterfaceType.WRAPPER, InterfaceType.HDLC):
            return None
        if settings.gateway is not None or settings.standard == Standard.ITALY \
                or settings.compressionOptions.enableCompression:
            return None
        cipher = settings.cipher
        ciphered = bool(cipher is not None and cipher.security != Security.NONE)
        largest = len(block_request(invoke=0, obis=bytes(6), number=0, block=bytes(block_size)))
        if largest + (_CIPHERING_HEADER if ciphered else 0) > settings.maxPduSize:
            return None
        if not ciphered:
            return cls(link=link, obis=obis, cipher=None, tag=0)
        if cipher.dedicatedKey or cipher.securitySuite != SecuritySuite.SUITE_0:
            return None
        if int(cipher.security) not in (0x10, 0x20, 0x30):
            return None
        # The choice GXDLMS.__getCipheringParameters makes for a request after the association.
        connected = (settings.connected & _DLMS_CONNECTED) != 0
        general = not (((not connected) or (settings.negotiatedConformance & Conformance.GENERAL_PROTECTION) == 0)
                       and (not settings.preEstablishedSystemTitle
                            or (settings.proposedConformance & Conformance.GENERAL_PROTECTION) == 0))
        glo = GloCipher(security=int(cipher.security), system_title=bytes(cipher.systemTitle),
                        block_cipher_key=bytes(cipher.blockCipherKey),
                        authentication_key=bytes(cipher.authenticationKey))
        return cls(link=link, obis=obis, cipher=glo, tag=GENERAL_GLO_CIPHERING if general else GLO_ACTION_REQUEST)

    @property
    def meter_id(self) -> str:
        return self._link.meter_id

    def request(self, number: int, block: bytes) -> bytes:
        """The next block request APDU, ciphered if the association is; advances invoke id and counter.

        On HDLC the APDU has the LLC header in front, as gurux frames it.
        """
        settings = self._link.client.settings
        if self._link.client.autoIncreaseInvokeID:
            settings.setInvokeID((settings.invokeId + 1) & 0xF)
        apdu = block_request(invoke=GXDLMS.getInvokeIDPriority(settings), obis=self._obis, number=number,
                             block=block)
        if self._cipher is not None:
            cipher = settings.cipher
            apdu = self._cipher.protect(apdu, tag=self._tag, invocation_counter=int(cipher.invocationCounter))
            cipher.invocationCounter = cipher.invocationCounter + 1
        return apdu

    def frames(self, apdu: bytes) -> list[bytes]:
        """``apdu`` as the link's frames: one WRAPPER frame, or gurux's HDLC I-frames (LLC header first)."""
        settings = self._link.client.settings
        if not self._hdlc:
            return [wrapper_frame(source=settings.clientAddress, destination=settings.serverAddress, apdu=apdu)]
        data = GXByteBuffer(bytes(_GXCommon.LLC_SEND_BYTES) + apdu)
        frames = [GXDLMS.getHdlcFrame(settings, 0, data)]
        while data.position != len(data):
            frames.append(GXDLMS.getHdlcFrame(settings, settings.getNextSend(False), data))
        return frames

    async def send(self, number: int, block: bytes) -> None:
        """image_block_transfer(number, block); raises DlmsResultError when the meter refuses it."""
        apdu = self.request(number, block)
        apdu_invoke = GXDLMS.getInvokeIDPriority(self._link.client.settings)
        if self._hdlc:
            await self._link.call(self.frames(apdu))  # gurux reads the answer and raises DlmsResultError
            return
        answer = await self._link.exchange_wrapper(self.frames(apdu)[0])
        try:
            if self._cipher is not None:
                expected = GENERAL_GLO_CIPHERING if self._tag == GENERAL_GLO_CIPHERING else GLO_ACTION_RESPONSE
                if not answer or answer[0] != expected:
                    raise ApduError(f"answer tag 0x{answer[:1].hex() or '--'}, expected 0x{expected:02x}")
                _, _, answer = self._cipher.unprotect(
                    answer, peer_title=bytes(self._link.client.settings.sourceSystemTitle or b""))
            invoke, result = parse_action_response(answer)
            if invoke != apdu_invoke:
                raise ApduError(f"answer to invoke id 0x{invoke:02x}, expected 0x{apdu_invoke:02x}")
        except (ApduError, IndexError) as exc:
            raise DlmsProtocolError(f"meter {self.meter_id}: block {number}: {exc}", meter_id=self.meter_id) from exc
        if result != SUCCESS:
            raise DlmsResultError(f"meter {self.meter_id} answered error {result}", result=result,
                                  meter_id=self.meter_id)
