"""The fixes of gurux-dlms 1.0.203 that concern ciphering and the HLS association: the secure
server's cipher, HLS pass 3/4, the AARE's system title and authentication value, invocation
counters, general-glo-ciphering answered in kind and AES-GCM's arguments. Applied by
:func:`edge.dlms.gurux_fixes.apply`, which says why each fix is the right behaviour."""

from __future__ import annotations

from typing import Any

def _fix_secure_server_cipher() -> None:
    # GXDLMSSecureServer.__init__ stores its GXCiphering in ``settings.ciphering``, but all
    # of the library (AARQ parsing, GMAC, encryption) reads ``settings.cipher``; so a "secure"
    # server never deciphered anything and HLS-GMAC could not work. Point ``cipher`` at the
    # same object (and keep ``ciphering`` for code that reads that name).
    from gurux_dlms.GXCiphering import GXCiphering
    from gurux_dlms.secure.GXDLMSSecureServer import GXDLMSSecureServer

    original_init = GXDLMSSecureServer.__init__

    def init(self: Any, association: Any, interface_type: Any) -> None:
        original_init(self, association, interface_type)
        if self.settings.cipher is None:
            self.settings.cipher = getattr(self.settings, "ciphering", None) or GXCiphering(b"ABCDEFGH")
        self.settings.ciphering = self.settings.cipher

    GXDLMSSecureServer.__init__ = init


def _fix_association_hls_reply() -> None:
    # GXDLMSAssociationLogicalName.invoke (method 1, reply_to_HLS_authentication) does
    # ``GXByteBuffer(int(e.parameters))`` and ``int(e.parameters)`` on the client's octet
    # string; int() of a bytearray raises TypeError, so HLS pass 3/4 always failed on the
    # server. The intent (as in the Java original) is to use the bytes themselves: for
    # HLS-GMAC read the security-control byte and invocation counter from them, compute our
    # own GMAC over StoC and compare. Method 1 is re-implemented here with the bytes; other
    # methods keep the original code.
    from gurux_dlms.enums.Authentication import Authentication
    from gurux_dlms.GXByteBuffer import GXByteBuffer
    from gurux_dlms.GXSecure import GXSecure
    from gurux_dlms.objects.enums.AssociationStatus import AssociationStatus
    from gurux_dlms.objects.GXDLMSAssociationLogicalName import GXDLMSAssociationLogicalName

    original_invoke = GXDLMSAssociationLogicalName.invoke

    def invoke(self: Any, settings: Any, e: Any) -> Any:
        if e.index != 1:
            return original_invoke(self, settings, e)
        if settings.authentication == Authentication.HIGH_ECDSA:
            raise ValueError("ECDSA is not implemented.")
        received = bytes(e.parameters or b"")
        ic = 0
        if settings.authentication == Authentication.HIGH_GMAC:
            secret = settings.sourceSystemTitle
            if len(received) < 5:
                self.associationStatus = AssociationStatus.NON_ASSOCIATED
                return None
            buffer = GXByteBuffer(bytearray(received))
            buffer.getUInt8()
            ic = buffer.getUInt32()
        else:
            secret = self.secret
        expected = GXSecure.secure(settings, settings.cipher, ic, settings.stoCChallenge, secret)
        if bytes(expected) != received:
            self.associationStatus = AssociationStatus.NON_ASSOCIATED
            return None
        if settings.authentication == Authentication.HIGH_GMAC:
            secret = settings.cipher.systemTitle
            # f(CtoS) takes an invocation counter of its own: the action-response carrying it
            # is ciphered with the next one (gurux used one value for both, an IV reused).
            ic = settings.cipher.invocationCounter
            settings.cipher.invocationCounter = ic + 1
        else:
            secret = self.secret
        self.associationStatus = AssociationStatus.ASSOCIATED
        return GXSecure.secure(settings, settings.cipher, ic, settings.ctoSChallenge, secret)

    GXDLMSAssociationLogicalName.invoke = invoke


def _fix_aare_system_title() -> None:
    # _GXAPDU.generateAARE writes the responding-AP-title (the server system title, needed
    # for HLS-GMAC and for any ciphered association) as ``A4 <len(st)> 04`` followed by
    # ``data.setUInt8()`` with no argument (TypeError, so no AARE at all) and then the title.
    # The BER encoding meant is ``A4 <len(st)+2> 04 <len(st)> <st>``. We hand generateAARE a
    # buffer whose argument-less setUInt8 completes exactly that: it corrects the outer
    # length it has just written and writes the inner length. The AARE's own length is
    # computed by generateAARE at the end, so it comes out right.
    from gurux_dlms._GXAPDU import _GXAPDU
    from gurux_dlms.GXByteBuffer import GXByteBuffer

    class _AareBuffer(GXByteBuffer):
        def setUInt8(self, item: Any = None, index: Any = None) -> None:  # noqa: N802
            if item is None and index is None:
                title_length = self.getUInt8(self.size - 2)
                GXByteBuffer.setUInt8(self, title_length + 2, self.size - 2)
                item = title_length
            GXByteBuffer.setUInt8(self, item, index)

    original = _GXAPDU.generateAARE.__func__

    def generate_aare(cls: Any, settings: Any, data: Any, result: Any, diagnostic: Any, cipher: Any,
                      error_data: Any, encrypted_data: Any) -> None:
        aare = _AareBuffer()
        original(cls, settings, aare, result, diagnostic, cipher, error_data, encrypted_data)
        data.set(correct_responding_authentication(bytes(aare.array())))

    _GXAPDU.generateAARE = classmethod(generate_aare)


def _fix_initiate_response_invocation_counter() -> None:
    # _GXAPDU.getUserInformation ciphers the AARE's glo-initiateResponse with the meter's
    # invocation counter but never increments it, so the next ciphered APDU reuses the same
    # IV (a GCM key-stream reuse), and a client that checks the meter's counter rises
    # strictly (dlms-cosem, as the Green Book requires) refuses the next response.
    from gurux_dlms._GXAPDU import _GXAPDU

    original = _GXAPDU.getUserInformation.__func__

    def get_user_information(cls: Any, settings: Any, cipher: Any) -> Any:
        ciphered = bool(cipher and cipher.isCiphered())
        data = original(cls, settings, cipher)
        if ciphered:
            cipher.invocationCounter += 1
        return data

    _GXAPDU.getUserInformation = classmethod(get_user_information)


# Set by the server on its settings for each request: answer with general-glo-ciphering.
GENERAL_CIPHERING_FLAG = "gridwire_general_ciphering"


def _fix_response_ciphering_follows_request() -> None:
    # The Green Book (9.2.7.2.4) protects a response the way its request was protected: a
    # request in general-glo-ciphering is answered in general-glo-ciphering. gurux answers
    # with service-specific glo-ciphering (glo-action-response, 0xCF) until the association
    # is complete, i.e. exactly the HLS pass-3 reply_to_HLS_authentication response, which a
    # client that only speaks general ciphering (dlms-cosem) cannot read. The server sets
    # GENERAL_CIPHERING_FLAG on its settings when the request came in general-glo-ciphering.
    from gurux_dlms.enums.Command import Command
    from gurux_dlms.GXDLMS import GXDLMS

    original = GXDLMS._GXDLMS__getCipheringParameters.__func__  # type: ignore[attr-defined]

    def parameters(cls: Any, p: Any) -> Any:
        s = original(cls, p)
        if getattr(p.settings, GENERAL_CIPHERING_FLAG, False) and s.tag not in (
                Command.GENERAL_GLO_CIPHERING, Command.GENERAL_DED_CIPHERING):
            s.tag = Command.GENERAL_GLO_CIPHERING
        return s

    GXDLMS._GXDLMS__getCipheringParameters = classmethod(parameters)  # type: ignore[attr-defined]


_AARE = 0x61
_RESPONDING_AUTHENTICATION_VALUE = 0xAA
_CHARSTRING_CHOICE = 0x80


def correct_responding_authentication(aare: bytes) -> bytes:
    """The AARE with its responding-authentication-value (the meter's HLS challenge) BER-correct.

    generateAARE writes ``AA <n> 80 <n> <challenge>``: the outer length counts the challenge
    but not the inner tag and length, so a strict BER reader (dlms-cosem) finds two bytes
    too few and fails on the whole AARE (gurux's own client skips the element by its inner
    length). The element is ``AA <n+2> 80 <n> <challenge>`` (Green Book, AARE-apdu,
    Authentication-value ::= CHOICE { charstring [0] IMPLICIT GraphicString, ... }). The
    AARE's own length already counts every byte written, so only this byte changes.
    """
    if len(aare) < 2 or aare[0] != _AARE or aare[1] & 0x80:
        return aare
    fixed = bytearray(aare)
    pos, end = 2, min(len(fixed), 2 + fixed[1])
    while pos + 1 < end:
        tag, length = fixed[pos], fixed[pos + 1]
        if length & 0x80:  # a long-form length: no element of ours is that long; leave the rest
            break
        if (tag == _RESPONDING_AUTHENTICATION_VALUE and pos + 3 < end and fixed[pos + 2] == _CHARSTRING_CHOICE
                and fixed[pos + 3] == length and pos + 4 + length <= end):
            fixed[pos + 1] = length + 2
            length += 2
        pos += 2 + length
    return bytes(fixed)


def _fix_aes_gcm_parameter_arguments() -> None:
    # GXDLMS.handleGloDedRequest (the server deciphering glo-/ded- requests after the AARQ:
    # HLS pass 3 and every ciphered GET/SET/ACTION) builds
    # ``AesGcmParameter(systemTitle, key, authenticationKey)``, but the constructor's first
    # parameter is ``tag``; so the system title became the tag, the key the system title and
    # the block cipher key was the authentication key, with no authentication key at all.
    # Every other call passes an int tag first. A tag is always an int, so a bytes-like first
    # argument can only be this call, and we shift the arguments to what it means.
    from gurux_dlms.AesGcmParameter import AesGcmParameter

    original_init = AesGcmParameter.__init__

    def init(self: Any, tag: Any = 0, *args: Any, **kwargs: Any) -> None:
        if isinstance(tag, (bytes, bytearray)) and len(args) == 2 and not kwargs:
            original_init(self, 0, tag, *args)
            return
        original_init(self, tag, *args, **kwargs)

    AesGcmParameter.__init__ = init


def _fix_association_accessors() -> None:
    # After HLS pass 3/4, handleMethodRequest calls obj.getAssociationStatus() and
    # settings.setConnected(...); the Python classes only have the ``associationStatus`` and
    # ``connected`` attributes (the accessors are Java names left in the port). Without
    # them the reply to pass 3 was never sent. Plain accessors are the intended behaviour.
    from gurux_dlms.GXDLMSSettings import GXDLMSSettings
    from gurux_dlms.objects.GXDLMSAssociationLogicalName import GXDLMSAssociationLogicalName

    if not hasattr(GXDLMSAssociationLogicalName, "getAssociationStatus"):
        GXDLMSAssociationLogicalName.getAssociationStatus = lambda self: self.associationStatus
    if not hasattr(GXDLMSSettings, "setConnected"):
        def set_connected(self: Any, value: Any) -> None:
            self.connected = value

        GXDLMSSettings.setConnected = set_connected
