"""Workarounds that make gurux-dlms 1.0.203's *server* classes usable, kept in one place.

gurux-dlms is a port of the Gurux C#/Java libraries; its client side works, but the server
side (used only by our meter simulator) calls methods that were never ported and has a few
typos. Each fix below says what is broken and why the fix is the right behaviour. They are
applied once, by :func:`apply`, and only after checking that the installed gurux-dlms is the
version they were written against: on any other version the fixes may be wrong or needless,
so we refuse to run rather than guess.

Known server defects deliberately NOT patched, because the simulator does not reach them:
GXDLMSProfileGeneric's own range filter (compares a datetime with 0) and column selection
(wrong column count): the simulator's load-profile object encodes its buffer itself
(edge.dlms.cosem_objects.ModelLoadProfile); the inactivity-timeout check (``int`` of a
timedelta): we never set an inactivity timeout; handleRequest answering a failed command
with an HDLC frame even on WRAPPER: our client reports it as a protocol error.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from typing import Any

from broker.errors import Unavailable
from edge.dlms import native_gcm

logger = logging.getLogger(__name__)

PINNED_GURUX_VERSION = "1.0.203"

_applied = False


class GuruxVersionError(Unavailable):
    """The installed gurux-dlms is not the version our server fixes were written for."""


def check_version(installed: str | None = None) -> str:
    """Return the gurux-dlms version (installed, or as given), raising GuruxVersionError if not pinned."""
    if installed is None:
        installed = installed_version("gurux-dlms")
        if installed is None:
            raise GuruxVersionError("gurux-dlms is not installed (pip install 'gridwire[edge]')")
    if installed != PINNED_GURUX_VERSION:
        raise GuruxVersionError(
            f"gurux-dlms {installed} is installed but edge.dlms.gurux_fixes was written for "
            f"{PINNED_GURUX_VERSION}; install gurux-dlms=={PINNED_GURUX_VERSION} or re-check every fix"
        )
    return installed


def installed_version(distribution: str) -> str | None:
    """``importlib.metadata.version(distribution)`` (None: not installed), read from the one
    ``.dist-info`` of the first sys.path directory that holds it, without importing
    importlib.metadata: it imports email, zipfile and csv, about 2 MiB of a concentrator's memory
    that nothing else there needs (issue 15: RSS). Anything else (an ``.egg-info``, two candidates,
    no Version header, nothing found) is left to importlib.metadata."""
    wanted = _normalized(distribution)
    for entry in sys.path:
        try:
            names = [name for name in os.listdir(entry or ".") if name.endswith((".dist-info", ".egg-info"))
                     and _normalized(name.partition("-")[0]) == wanted]
        except OSError:  # not a directory (a zip holds no gurux), or gone
            continue
        if len(names) == 1 and names[0].endswith(".dist-info"):
            version = _metadata_version(os.path.join(entry or ".", names[0], "METADATA"))
            if version is not None:
                return version
        if names:
            break
    import importlib.metadata

    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _metadata_version(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as metadata:
            for line in metadata:
                if not line.strip():  # the end of the headers
                    break
                key, _, value = line.partition(":")
                if key.strip().lower() == "version":
                    return value.strip()
    except OSError:
        pass
    return None


def apply() -> None:
    """Apply every fix once (idempotent). Raises GuruxVersionError on an unpinned version."""
    global _applied
    if _applied:
        return
    check_version()
    _fix_server_reply()
    _fix_server_hooks()
    _fix_value_event_args_iter()
    _fix_settings_gbt_typo()
    _fix_secure_server_cipher()
    _fix_server_received_data_reset()
    _fix_association_hls_reply()
    _fix_aare_system_title()
    _fix_initiate_response_invocation_counter()
    _fix_response_ciphering_follows_request()
    _fix_skip_max_pdu_size()
    _fix_aes_gcm_parameter_arguments()
    _fix_association_accessors()
    _fix_stdout_prints()
    _fix_ln_parameters_accessors()
    _fix_release_response_lengths()
    _fix_initialize_object_list()
    _fix_hdlc_link_replies()
    _fix_byte_buffer_get_copies_per_byte()
    # Not a defect fix: GCM in OpenSSL instead of pure Python, for the client and the
    # simulator alike (it also checks the tags gurux never checked; see native_gcm).
    native_gcm.install()
    _applied = True
    logger.debug("gurux-dlms %s server fixes applied", PINNED_GURUX_VERSION)


def _fix_server_reply() -> None:
    # GXDLMSServer.handleRequest/handleCommand call sr.setReply(), sr.getConnectionInfo(),
    # sr.getCount() and sr.setCount() but the Python GXServerReply only has the attributes
    # (the Java original has the accessors). Add accessors over the existing attributes.
    from gurux_dlms.GXServerReply import GXServerReply

    def set_reply(self: Any, value: Any) -> None:
        self.reply = value

    def get_connection_info(self: Any) -> Any:
        return self.connectionInfo

    def get_count(self: Any) -> int:
        return self.count

    def set_count(self: Any, value: int) -> None:
        self.count = value

    GXServerReply.setReply = set_reply
    GXServerReply.getConnectionInfo = get_connection_info
    GXServerReply.getCount = get_count
    GXServerReply.setCount = set_count


def _fix_server_hooks() -> None:
    # GXDLMSLNCommandHandler calls server.notifyRead(), server.notifyConnected(info),
    # server.getTransaction() and server.setTransaction(t), none of which exist on the Python
    # GXDLMSServer. getTransaction/setTransaction are plain accessors of the existing
    # ``transaction`` attribute. notifyRead() is called with no arguments (the pre-read hook
    # has nothing to pass), so it is a no-op here; our simulator's COSEM objects refresh their
    # own values in getValue(), which is called right after. notifyConnected forwards to
    # onConnected, which is what the Java server does after HLS pass 3/4 succeeds.
    from gurux_dlms.GXDLMSServer import GXDLMSServer

    def get_transaction(self: Any) -> Any:
        return self.transaction

    def set_transaction(self: Any, value: Any) -> None:
        self.transaction = value

    def notify_read(self: Any, *args: Any) -> None:
        return None

    def notify_connected(self: Any, connection_info: Any) -> None:
        self.onConnected(connection_info)

    GXDLMSServer.getTransaction = get_transaction
    GXDLMSServer.setTransaction = set_transaction
    GXDLMSServer.notifyRead = notify_read
    GXDLMSServer.notifyConnected = notify_connected


def _fix_value_event_args_iter() -> None:
    # handleMethodRequest does ``server.onPreAction(list(e))`` with a single ValueEventArgs,
    # meaning "a list holding e" (the Java code builds new ValueEventArgs[]{e}). list() of a
    # non-iterable raises TypeError, so every ACTION failed. Iterating an event as a
    # one-element sequence of itself gives exactly the intended list.
    from gurux_dlms.ValueEventArgs import ValueEventArgs

    def iterate(self: Any) -> Any:
        yield self

    ValueEventArgs.__iter__ = iterate


def _fix_settings_gbt_typo() -> None:
    # getRequestNextDataBlock reads ``settings.gbtWndowSize`` (missing "i"); the attribute is
    # ``gbtWindowSize``. Without this every multi-block GET (a load profile longer than one
    # PDU) fails on the second block. A read-only alias is the exact intended value.
    from gurux_dlms.GXDLMSSettings import GXDLMSSettings

    if not hasattr(GXDLMSSettings, "gbtWndowSize"):
        GXDLMSSettings.gbtWndowSize = property(lambda self: self.gbtWindowSize)


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


def _fix_server_received_data_reset() -> None:
    # When handleCommand raises, handleRequest runs ``self.receivedData.size(0)``; ``size`` is
    # a property (an int) on GXByteBuffer, so this raises TypeError, the server's receive
    # buffer is left full and the intended "unacceptable frame" reply is never sent. The code
    # means "set the size to 0". We give the server's receive buffer a ``size`` that is still
    # an int for every other use but can also be called to set the size.
    from gurux_dlms.GXByteBuffer import GXByteBuffer
    from gurux_dlms.GXDLMSServer import GXDLMSServer

    class _CallableSize(int):
        _owner: GXByteBuffer

        def __call__(self, value: int) -> None:
            GXByteBuffer.setsize(self._owner, value)

    def get_size(buffer: GXByteBuffer) -> _CallableSize:
        size = _CallableSize(GXByteBuffer.getSize(buffer))
        size._owner = buffer
        return size

    class _ReceiveBuffer(GXByteBuffer):
        size = property(get_size, GXByteBuffer.setsize)

    original_init = GXDLMSServer.__init__

    def init(self: Any, logical_name_referencing: Any, interface_type: Any) -> None:
        original_init(self, logical_name_referencing, interface_type)
        self.receivedData = _ReceiveBuffer()

    GXDLMSServer.__init__ = init


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


class _CallableFlag(int):
    """A bool that can also be called for itself: read both as ``e.flag`` and ``e.flag()``."""

    def __call__(self) -> bool:
        return bool(self)


def _fix_skip_max_pdu_size() -> None:
    # The association's object list (GXDLMSAssociationLogicalName.getObjects, attribute 2)
    # tests ``e.isSkipMaxPduSize``, which ValueEventArgs does not have (its field is
    # ``skipMaxPduSize``; the SN association calls ``e.isSkipMaxPduSize()``), so reading the
    # object list, which every client does first, failed with AttributeError and the server
    # answered a WRAPPER request with an HDLC "unacceptable frame". Both spellings now read the field.
    from gurux_dlms.ValueEventArgs import ValueEventArgs

    ValueEventArgs.isSkipMaxPduSize = property(  # type: ignore[attr-defined]
        lambda self: _CallableFlag(bool(self.skipMaxPduSize)))


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


def _fix_byte_buffer_get_copies_per_byte() -> None:
    # Not wrong, slow: GXByteBuffer.get(target) copies one byte at a time through the position
    # property (two checked calls a byte). Every ciphered APDU is read out with it, so for an
    # HLS-GMAC image block of 512 bytes it was a third of the transfer's CPU. One slice copy
    # does the same: same bounds check, same bytes, same final position.
    from gurux_dlms.GXByteBuffer import GXByteBuffer

    def get(self: Any, target: Any) -> None:
        count = len(target)
        start = self.position
        if self.size - start < count:
            raise ValueError("get")
        target[0:count] = self._data[start:start + count]
        self.position = start + count

    GXByteBuffer.get = get


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


def _fix_stdout_prints() -> None:
    # GXDLMSChippering prints "Encryption is applied." / "Authentication is applied." on
    # every ciphered frame, and the client, APDU and security modules print diagnostics; on
    # a concentrator that is stdout noise per read (the real errors are raised anyway).
    # Shadow ``print`` in those modules only (module globals are looked up before builtins)
    # and send the text to our debug log. The package re-exports classes under the module
    # names, so the modules are taken from sys.modules, not by attribute.
    import importlib

    def quiet(*args: Any, **kwargs: Any) -> None:
        logger.debug("gurux: %s", " ".join(str(a) for a in args))

    for name in ("GXDLMSChippering", "GXDLMSClient", "GXDLMS", "GXSecure", "_GXAPDU",
                 "GXDLMSSettings", "GXDLMSLNCommandHandler", "GXDLMSChipperingStream"):
        module = importlib.import_module(f"gurux_dlms.{name}")
        module.print = quiet  # type: ignore[attr-defined]


def _fix_ln_parameters_accessors() -> None:
    # handleSetRequestNormal (every SET, e.g. writing the clock) calls p.isMultipleBlocks()
    # and p.setStatus(...) on GXDLMSLNParameters, which only has the ``multipleBlocks`` and
    # ``status`` attributes (Java accessor names again); every SET failed with
    # AttributeError. Plain accessors are what the handler means.
    from gurux_dlms.GXDLMSLNParameters import GXDLMSLNParameters

    if not hasattr(GXDLMSLNParameters, "isMultipleBlocks"):
        GXDLMSLNParameters.isMultipleBlocks = lambda self: self.multipleBlocks
    if not hasattr(GXDLMSLNParameters, "setStatus"):
        def set_status(self: Any, value: Any) -> None:
            self.status = value

        GXDLMSLNParameters.setStatus = set_status


def _fix_release_response_lengths() -> None:
    # GXDLMSServer.handleReleaseRequest writes the RLRE as
    # ``63 <len(ui)> 80 01 00 BE <1+len(ui)> 04 <len(ui)> <ui>``: both BER lengths are short
    # (the RLRE length must cover everything after it: len(ui)+7; the user-information
    # length must cover ``04 <len> <ui>``: len(ui)+2). gurux's own client ignores this, but
    # strict clients (dlms-cosem) reject the release. We recompute both lengths from the
    # bytes actually written, only when the layout is exactly the one above.
    # On HDLC it also means to put the LLC reply header first, with ``replyData.set(0, LLC)``:
    # set()'s first parameter is the value, so it writes nothing, and the RLRE went out with
    # no LLC header (gurux's client does not look; dlms-cosem refuses the release).
    from gurux_dlms.enums.InterfaceType import InterfaceType
    from gurux_dlms.GXDLMSServer import GXDLMSServer
    from gurux_dlms.internal._GXCommon import _GXCommon

    original = GXDLMSServer.handleReleaseRequest
    llc = bytes(_GXCommon.LLC_REPLY_BYTES)

    def handle_release_request(self: Any, data: Any) -> None:
        original(self, data)
        buffer = self.replyData
        raw = bytes(buffer.array())
        if self.settings.interfaceType in (InterfaceType.HDLC, InterfaceType.HDLC_WITH_MODE_E) \
                and not raw.startswith(llc):
            raw = llc + raw
            buffer.clear()
            buffer.set(raw)
        pos = raw.rfind(b"\x63", 0, max(0, len(raw) - 5))
        while pos >= 0 and raw[pos + 2:pos + 6] != b"\x80\x01\x00\xbe":
            pos = raw.rfind(b"\x63", 0, pos)
        if pos < 0:
            return
        buffer.setUInt8(len(raw) - pos - 2, pos + 1)
        buffer.setUInt8(len(raw) - (pos + 5) - 2, pos + 6)

    GXDLMSServer.handleReleaseRequest = handle_release_request


def _fix_initialize_object_list() -> None:
    # GXDLMSServer.initialize() fills an association's empty object list with
    # ``objectList.append(self.items)``: the whole collection as one element, which
    # GXDLMSObjectCollection.append rejects (TypeError), so no server with an explicit
    # association object could start. The intent is "the association lists every object";
    # we fill empty association object lists item by item before the original runs (a
    # non-empty list is left alone by it).
    from gurux_dlms.GXDLMSServer import GXDLMSServer
    from gurux_dlms.objects.GXDLMSAssociationLogicalName import GXDLMSAssociationLogicalName
    from gurux_dlms.objects.GXDLMSAssociationShortName import GXDLMSAssociationShortName

    original = GXDLMSServer.initialize

    def initialize(self: Any) -> None:
        for association in list(self.items):
            if isinstance(association, (GXDLMSAssociationLogicalName, GXDLMSAssociationShortName)) \
                    and len(association.objectList) == 0:
                for item in list(self.items):
                    association.objectList.append(item)
        original(self)

    GXDLMSServer.initialize = initialize


def _fix_hdlc_link_replies() -> None:
    # GXDLMSServer.handleSnrmRequest (the HDLC link set-up, needed by every serial meter)
    # writes the UA's parameters from ``self.hdlc.maxInfoTX`` etc.: with no HDLC setup object
    # (``self.hdlc`` None, the default) that is an AttributeError, and with one it calls a
    # ``settings.hdlc.update`` that does not exist (the method is ``_update``) and reads
    # attributes the setup object does not have. Every SNRM was answered with FRMR. The Java
    # original answers with the *negotiated* values in ``settings.hdlc``: start from our
    # limits (the setup object's, else the defaults), let the client's SNRM lower them, and
    # echo the result (the original also wrote the group length with setUInt8 arguments
    # swapped). generateDisconnectRequest (the UA to DISC) reads the same missing attributes,
    # so DISC was answered with FRMR; it echoes the negotiated values too. The data-link
    # state handling is kept exactly as in the original.
    from gurux_dlms.ConnectionState import ConnectionState
    from gurux_dlms.GXDLMS import GXDLMS
    from gurux_dlms.GXDLMSServer import GXDLMSServer
    from gurux_dlms.GXHdlcSettings import GXHdlcSettings
    from gurux_dlms._HDLCInfo import _HDLCInfo

    fields = ("maxInfoRX", "maxInfoTX", "windowSizeRX", "windowSizeTX")
    defaults = (GXHdlcSettings.DEFAULT_MAX_INFO_RX, GXHdlcSettings.DEFAULT_MAX_INFO_TX,
                GXHdlcSettings.DEFAULT_WINDOWS_SIZE_RX, GXHdlcSettings.DEFAULT_WINDOWS_SIZE_TX)

    def write_link_parameters(self: Any) -> None:
        negotiated, reply = self.settings.hdlc, self.replyData
        reply.set(bytes([0x81, 0x80, 0]))  # format id, group id, group length (set below)
        for tag, value in ((_HDLCInfo.MAX_INFO_TX, negotiated.maxInfoTX),
                           (_HDLCInfo.MAX_INFO_RX, negotiated.maxInfoRX)):
            reply.setUInt8(tag)
            GXDLMS.appendHdlcParameter(reply, value)
        for tag, value in ((_HDLCInfo.WINDOW_SIZE_TX, negotiated.windowSizeTX),
                           (_HDLCInfo.WINDOW_SIZE_RX, negotiated.windowSizeRX)):
            reply.set(bytes([tag, 4]))
            reply.setUInt32(value)
        reply.setUInt8(len(reply) - 3, 2)

    def handle_snrm_request(self: Any, data: Any) -> None:
        negotiated = self.settings.hdlc
        for name, value in zip(fields, defaults, strict=True):
            setattr(negotiated, name, value)
        negotiated._update(self.hdlc)  # no-op without an HDLC setup object
        limits = [getattr(negotiated, name) for name in fields]
        GXDLMS.parseSnrmUaResponse(data, negotiated)
        for name, limit in zip(fields, limits, strict=True):  # a client may lower our limits, not raise them
            setattr(negotiated, name, min(getattr(negotiated, name), limit))
        self.reset(True)
        write_link_parameters(self)
        self.settings.connected = ConnectionState.HDLC

    GXDLMSServer.handleSnrmRequest = handle_snrm_request
    GXDLMSServer.generateDisconnectRequest = write_link_parameters
