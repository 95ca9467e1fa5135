"""One DLMS/COSEM association with a meter over TCP (WRAPPER) or a serial port (HDLC).

gurux's GXDLMSClient only builds and parses bytes; this module moves them over an asyncio
stream (a socket, or a pyserial port via :mod:`edge.dlms.links`), maps failures to
:mod:`edge.dlms.errors`, and keeps the HLS invocation counter in an
:class:`InvocationCounterStore` across associations and restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from edge.dlms import gurux_fixes

gurux_fixes.apply()

from gurux_dlms.enums.Authentication import Authentication  # noqa: E402
from gurux_dlms.enums.InterfaceType import InterfaceType  # noqa: E402
from gurux_dlms.enums.Security import Security  # noqa: E402
from gurux_dlms.GXDLMSClient import GXDLMSClient  # noqa: E402
from gurux_dlms.GXDLMSException import GXDLMSException  # noqa: E402
from gurux_dlms.GXReplyData import GXReplyData  # noqa: E402
from gurux_dlms.secure.GXDLMSSecureClient import GXDLMSSecureClient  # noqa: E402

from edge.config_lean import SecurityMode  # noqa: E402
from edge.dlms.counter_store import InvocationCounterStore  # noqa: E402
from edge.dlms.errors import (  # noqa: E402
    DlmsAuthenticationError,
    DlmsCommunicationError,
    DlmsProtocolError,
    DlmsResultError,
)
from edge.dlms.links import FramingError, SerialWriter, open_serial, read_hdlc_frame, read_wrapper_frame  # noqa: E402

if TYPE_CHECKING:
    from edge.config_lean import DlmsMeterConfig

logger = logging.getLogger(__name__)


class DlmsAssociation:
    """A link (TCP, or serial with an HDLC connection) plus application association; use ``async with``."""

    def __init__(self, *, config: DlmsMeterConfig, counters: InvocationCounterStore | None = None) -> None:
        self.config = config
        self._counters = counters
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | SerialWriter | None = None
        self._hdlc = config.link == "serial"
        self.client = self._build_client()

    @property
    def meter_id(self) -> str:
        return self.config.meter_id

    def _build_client(self) -> GXDLMSClient:
        cfg = self.config
        mode = cfg.security
        interface = InterfaceType.HDLC if self._hdlc else InterfaceType.WRAPPER
        server = cfg.server_address
        if self._hdlc and cfg.physical_address is not None:
            server = GXDLMSClient.getServerAddress(cfg.server_address, cfg.physical_address)
        if mode is SecurityMode.HLS_GMAC:
            client = GXDLMSSecureClient(True, cfg.client_address, server, Authentication.HIGH_GMAC,
                                        None, interface)
            cipher = client.ciphering
            cipher.security = Security.AUTHENTICATION_ENCRYPTION
            cipher.systemTitle = bytearray(bytes.fromhex(cfg.client_system_title))
            cipher.blockCipherKey = bytearray(cfg.key_bytes("block_cipher_key"))
            cipher.authenticationKey = bytearray(cfg.key_bytes("authentication_key"))
            return client
        password = cfg.password.get_secret_value() if (mode is SecurityMode.LLS and cfg.password) else None
        return GXDLMSClient(True, cfg.client_address, server, Authentication(mode.authentication), password,
                            interface)

    # --- lifecycle ------------------------------------------------------------------------
    async def __aenter__(self) -> DlmsAssociation:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        """Connect and associate (AARQ/AARE, then HLS pass 3/4 when required)."""
        cfg = self.config
        await self._connect()
        if cfg.security is SecurityMode.HLS_GMAC:
            start = self._counters.reserve(self.meter_id) if self._counters else 0
            self.client.ciphering.invocationCounter = start
        try:
            if self._hdlc:
                # HDLC needs a data link first: SNRM/UA also agrees the frame sizes and window.
                reply = await self._exchange(self.client.snrmRequest())
                try:
                    self.client.parseUAResponse(reply.data)
                except Exception as exc:  # gurux raises ValueError/GXDLMSException on a bad UA
                    raise DlmsProtocolError(f"meter {self.meter_id}: HDLC connect (SNRM/UA) failed: "
                                            f"{_describe(exc)}", meter_id=self.meter_id) from exc
            reply = await self._exchange(self.client.aarqRequest())
            try:
                self.client.parseAareResponse(reply.data)
            except (GXDLMSException, ValueError) as exc:
                raise DlmsAuthenticationError(f"meter {self.meter_id} refused the association ({cfg.security}): "
                                              f"{_describe(exc)}", meter_id=self.meter_id) from exc
            if self.client.getIsAuthenticationRequired():
                reply = await self._exchange(self.client.getApplicationAssociationRequest())
                try:
                    self.client.parseApplicationAssociationResponse(reply.data)
                except Exception as exc:  # gurux raises bare Exception when StoC does not match
                    raise DlmsAuthenticationError(
                        f"meter {self.meter_id} failed HLS authentication (pass 3/4): wrong keys or system title",
                        meter_id=self.meter_id) from exc
        except BaseException:
            await self._close_socket()
            raise
        logger.debug("meter %s: associated (%s)", self.meter_id, cfg.security)

    async def close(self) -> None:
        """Release the association (best effort) and close the socket; persist the counter."""
        if self._writer is None:
            return
        with contextlib.suppress(DlmsCommunicationError, DlmsProtocolError):
            await self._exchange(self.client.releaseRequest())
            if self._hdlc:
                # DISC ends the HDLC link so the meter accepts the next SNRM from anyone.
                await self._exchange(self.client.disconnectRequest())
        await self._close_socket()

    async def _connect(self) -> None:
        cfg = self.config
        try:
            if cfg.serial is not None:
                self._reader, self._writer = await open_serial(cfg.serial, baudrate=cfg.baudrate,
                                                               write_timeout=cfg.timeout_s)
            else:
                self._reader, self._writer = await asyncio.wait_for(
                    asyncio.open_connection(cfg.host, cfg.port), cfg.timeout_s)
        except (OSError, TimeoutError, ValueError) as exc:  # pyserial: SerialException (OSError), ValueError
            raise DlmsCommunicationError(f"meter {self.meter_id}: cannot connect to {cfg.endpoint}: {exc!r}",
                                         meter_id=self.meter_id) from exc

    async def _close_socket(self) -> None:
        if self.config.security is SecurityMode.HLS_GMAC and self._counters is not None:
            self._counters.commit(self.meter_id, int(self.client.ciphering.invocationCounter))
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    # --- services -------------------------------------------------------------------------
    async def read(self, obj: Any, attribute: int) -> Any:
        """GET one attribute into ``obj`` (gurux applies register scalers) and return the value."""
        reply = await self._exchange(self.client.read(obj, attribute))
        self.client.updateValue(obj, attribute, reply.value)
        return obj.getValues()[attribute - 1]

    async def read_rows_by_range(self, profile: Any, start: datetime, end: datetime) -> list[list[Any]]:
        """GET a profile generic's buffer with a range selector; ``profile.captureObjects`` must be known."""
        reply = await self._exchange(self.client.readRowsByRange(profile, start, end))
        self.client.updateValue(profile, 2, reply.value)
        return list(profile.buffer)

    async def write(self, obj: Any, attribute: int) -> None:
        await self._exchange(self.client.write(obj, attribute))

    async def call(self, frames: Any) -> None:
        """Send the frames of an ACTION request built by gurux (e.g. remoteDisconnect)."""
        await self._exchange(frames)

    async def exchange_wrapper(self, frame: bytes) -> bytes:
        """Send one WRAPPER ``frame`` built by the caller; return the APDU of the one frame answering it.

        The path of :class:`edge.dlms.block_sender.BlockSender`: no gurux parsing, one timeout for
        the round trip. Link failures raise DlmsCommunicationError as every other request does.
        """
        if self._writer is None or self._reader is None or self._hdlc:
            raise DlmsCommunicationError(f"meter {self.meter_id}: not connected over WRAPPER", meter_id=self.meter_id)
        with self._link_errors():
            async with asyncio.timeout(self.config.timeout_s):
                self._writer.write(frame)
                await self._writer.drain()
                answer = await read_wrapper_frame(self._reader)
        if answer[2:4] != frame[4:6] or answer[4:6] != frame[2:4]:
            raise DlmsProtocolError(f"meter {self.meter_id}: WRAPPER answer from wPort "
                                    f"{int.from_bytes(answer[2:4], 'big')} to {int.from_bytes(answer[4:6], 'big')}",
                                    meter_id=self.meter_id)
        return answer[8:]

    # --- transport ------------------------------------------------------------------------
    async def _exchange(self, frames: Any) -> GXReplyData:
        if isinstance(frames, (bytes, bytearray)):
            frames = [frames]
        reply = GXReplyData()
        for frame in frames:
            reply = GXReplyData()
            outgoing: Any = frame
            while True:
                await self._send(outgoing)
                await self._receive_into(reply)
                if reply.error:
                    raise DlmsResultError(f"meter {self.meter_id} answered error {reply.error}",
                                          result=int(reply.error), meter_id=self.meter_id)
                if not reply.isMoreData():
                    break
                outgoing = self.client.receiverReady(reply)
        return reply

    async def _send(self, frame: Any) -> None:
        if self._writer is None:
            raise DlmsCommunicationError(f"meter {self.meter_id}: not connected", meter_id=self.meter_id)
        try:
            self._writer.write(bytes(frame))
            await asyncio.wait_for(self._writer.drain(), self.config.timeout_s)
        except (OSError, TimeoutError) as exc:
            raise DlmsCommunicationError(f"meter {self.meter_id}: send failed: {exc!r}",
                                         meter_id=self.meter_id) from exc

    async def _receive_into(self, reply: GXReplyData) -> None:
        assert self._reader is not None
        with self._link_errors():
            read_frame = read_hdlc_frame if self._hdlc else read_wrapper_frame
            while True:
                try:
                    frame = await asyncio.wait_for(read_frame(self._reader), self.config.timeout_s)
                except FramingError as exc:
                    raise DlmsProtocolError(f"meter {self.meter_id}: {exc}", meter_id=self.meter_id) from exc
                try:
                    complete = self.client.getData(bytearray(frame), reply)
                except GXDLMSException as exc:
                    raise DlmsProtocolError(f"meter {self.meter_id}: {_describe(exc)}",
                                            meter_id=self.meter_id) from exc
                except Exception as exc:  # gurux raises ValueError/TypeError/IndexError on bad frames
                    raise DlmsProtocolError(f"meter {self.meter_id}: cannot parse reply: {exc!r}",
                                            meter_id=self.meter_id) from exc
                if complete:
                    return

    @contextlib.contextmanager
    def _link_errors(self) -> Iterator[None]:
        """A timeout or a lost connection while talking to the meter, as DlmsCommunicationError."""
        try:
            yield
        except TimeoutError as exc:
            raise DlmsCommunicationError(f"meter {self.meter_id}: no answer within {self.config.timeout_s}s",
                                         meter_id=self.meter_id) from exc
        except (asyncio.IncompleteReadError, OSError) as exc:
            raise DlmsCommunicationError(f"meter {self.meter_id}: connection lost: {exc!r}",
                                         meter_id=self.meter_id) from exc


def _describe(exc: BaseException) -> str:
    """A gurux exception as text without any frame bytes (which could hold ciphered secrets)."""
    if isinstance(exc, GXDLMSException):
        return f"result {getattr(exc, 'result', '?')}, diagnostic {getattr(exc, 'diagnostic', '?')}"
    return type(exc).__name__ + (f": {exc}" if str(exc) else "")
