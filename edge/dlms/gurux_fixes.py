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

The fixes that concern ciphering and the HLS association are in :mod:`edge.dlms.gurux_cipher_fixes`,
the version pin and its check in :mod:`edge.dlms.gurux_version`; this module applies them all.
"""

from __future__ import annotations

import logging
from typing import Any

from edge.dlms import native_gcm
from edge.dlms.gurux_cipher_fixes import (
    GENERAL_CIPHERING_FLAG,
    _fix_aare_system_title,
    _fix_aes_gcm_parameter_arguments,
    _fix_association_accessors,
    _fix_association_hls_reply,
    _fix_initiate_response_invocation_counter,
    _fix_response_ciphering_follows_request,
    _fix_secure_server_cipher,
    correct_responding_authentication,
)
from edge.dlms.gurux_version import PINNED_GURUX_VERSION, GuruxVersionError, check_version, installed_version

logger = logging.getLogger(__name__)
_applied = False


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


__all__ = ["GENERAL_CIPHERING_FLAG", "PINNED_GURUX_VERSION", "GuruxVersionError", "apply", "check_version",
           "correct_responding_authentication", "installed_version"]
