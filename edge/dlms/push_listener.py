"""The concentrator's DLMS push listener: meters' data and event notifications, on TCP and HDLC.

Meters push to the concentrator on their own (COSEM push setup, class 40): a TCP connection
per push carrying WRAPPER frames, or HDLC frames on a serial line. Each frame is decoded by
:mod:`edge.dlms.push`, its meter found, and its events handed to ``sink`` (the concentrator's
:class:`~edge.events.DeviceEvents`, which puts them in the durable outbox).

Which meter pushed: a data notification names its logical device name, matched against each
configured meter's ``device_name`` (default: its ``meter_id``). An event notification names
none; it belongs to the one configured meter at the connection's peer address (TCP) or with its
HDLC address (serial), and is dropped with a warning if that is not exactly one meter.

A ciphered push (general-glo-ciphering, from a meter with HLS security) is opened with the global
keys of the meters that could have sent it (those at the connection's address, or on the line):
the one whose keys make its authentication tag hold sent it, and that meter's system title is
remembered so later pushes go straight to its keys. Its invocation counter must rise: a push
whose counter is not above the last one accepted from that meter is a replay, dropped.

DLMS pushes are not TLS: the listener binds to ``[push] host`` (loopback unless set), and a TCP
connection from an address that is no configured meter's is closed unread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING


from broker.backoff import Backoff
from broker.lean import DeviceEvent
from edge.dlms.links import FramingError, open_serial, read_hdlc_frame, read_wrapper_frame
from edge.dlms.push import Notification, PushError, Sealed, decode_apdu, frame_apdu, notification_events, sealed, unseal

if TYPE_CHECKING:
    from edge.config_lean import DlmsMeterConfig

log = logging.getLogger(__name__)

_LOGGED_BYTES = 64
# Binding the push port or opening a push line again: local resources, so no jitter.
REOPEN = Backoff(initial=0.5, maximum=30.0, randomness=0.0)


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class PushStats:
    frames: int = 0
    events: int = 0
    refused_connections: int = 0
    undecodable: int = 0
    unknown_meter: int = 0
    replayed: int = 0


class PushListener:
    """Listens for pushes on ``host:port`` (TCP) and on ``serial_lines`` (HDLC) until cancelled."""

    def __init__(self, *, meters: Iterable[DlmsMeterConfig], sink: Callable[[list[DeviceEvent]], object],
                 host: str = "127.0.0.1", port: int | None = None, serial_lines: Iterable[str] = (),
                 baudrate: int = 9600, clock: Callable[[], datetime] = _utcnow,
                 keys_of: Callable[[str], list[DlmsMeterConfig]] | None = None) -> None:
        """``keys_of`` gives the configs whose keys may open a meter's ciphered pushes, current first
        (a concentrator: the keys a key change left active, then pending ones); default: ``meters``'."""
        self._meters = list(meters)
        self._by_name = {(m.device_name or m.meter_id): m.meter_id for m in self._meters}
        self._sink = sink
        self.host = host
        self._port = port
        self._lines = list(serial_lines)
        self._baudrate = baudrate
        self._clock = clock
        self._server: asyncio.Server | None = None
        self._peers: dict[str, list[str]] = {}
        self._configs = {m.meter_id: m for m in self._meters}
        self._keys_of = keys_of or (lambda meter_id: [self._configs[meter_id]])
        self._by_title: dict[bytes, str] = {}  # system title -> meter, learnt from pushes opened
        self._counters: dict[str, int] = {}  # meter -> the last invocation counter accepted
        self.stats = PushStats()
        # Set once every listener is open (tests and the demo wait on it).
        self.listening = asyncio.Event()

    @property
    def port(self) -> int | None:
        """The TCP port actually bound (when ``port`` was 0), None without a TCP listener."""
        if self._server is None or not self._server.sockets:
            return None
        return self._server.sockets[0].getsockname()[1]

    async def run(self) -> None:
        """Listen until cancelled. A port that cannot be bound or a line that cannot be opened is
        retried with backoff, logged: the concentrator's metering goes on meanwhile."""
        self._peers = self._meter_addresses()
        async with contextlib.AsyncExitStack() as stack, asyncio.TaskGroup() as tg:
            if self._port is not None:
                await self._bind()
                stack.push_async_callback(self._close_server)
            for line in self._lines:
                tg.create_task(self._serve_line(line), name=f"dlms-push {line}")
            self.listening.set()
            await asyncio.Event().wait()

    async def _bind(self) -> None:
        failures = 0
        while True:
            try:
                self._server = await asyncio.start_server(self._on_connect, self.host, self._port)
            except OSError as exc:
                delay = REOPEN.delay(failures)
                failures += 1
                log.error("DLMS push listener cannot listen on %s:%s: %s; trying again in %.0fs", self.host,
                          self._port, exc, delay)
                await asyncio.sleep(delay)
                continue
            log.info("DLMS push listener on %s:%d", self.host, self.port)
            return

    async def _close_server(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _meter_addresses(self) -> dict[str, list[str]]:
        """Meter ids by every address their configured host resolves to (TCP meters)."""
        found: dict[str, list[str]] = {}
        for meter in self._meters:
            if meter.host is None:
                continue
            try:
                addresses = {info[4][0] for info in socket.getaddrinfo(meter.host, None)}
            except OSError as exc:
                log.warning("push listener: cannot resolve meter %s host %s: %s", meter.meter_id, meter.host, exc)
                continue
            for address in addresses:
                found.setdefault(address, []).append(meter.meter_id)
        return found

    # --- TCP ----------------------------------------------------------------------------------

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        address = peer[0] if peer else "?"
        try:
            if address not in self._peers:
                self.stats.refused_connections += 1
                log.warning("push listener: connection from %s, which is no configured meter; closed", address)
                return
            while True:
                try:
                    frame = await read_wrapper_frame(reader)
                except asyncio.IncompleteReadError:
                    return
                self._received(frame, hdlc=False, peer_meters=self._peers[address])
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    # --- HDLC ---------------------------------------------------------------------------------

    async def _serve_line(self, line: str) -> None:
        import serial  # pyserial only for HDLC push lines (issue 15: RSS)

        failures = 0
        while True:
            try:
                reader, writer = await open_serial(line, baudrate=self._baudrate, write_timeout=1.0)
            except (OSError, serial.SerialException) as exc:
                delay = REOPEN.delay(failures)
                failures += 1
                log.warning("DLMS push line %s cannot be opened: %s; trying again in %.1fs", line, exc, delay)
                await asyncio.sleep(delay)
                continue
            failures = 0
            log.info("DLMS push listener on serial line %s", line)
            try:
                await self._read_line(line, reader)
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                log.warning("DLMS push line %s failed: %s; reopening", line, exc)
            finally:
                writer.close()

    async def _read_line(self, line: str, reader: asyncio.StreamReader) -> None:
        serial_meters = [m.meter_id for m in self._meters]
        while True:
            try:
                frame = await read_hdlc_frame(reader)
            except FramingError as exc:
                self.stats.undecodable += 1
                log.warning("push listener %s: %s", line, exc)
                continue
            self._received(frame, hdlc=True, peer_meters=serial_meters)

    # --- frames -------------------------------------------------------------------------------

    def _received(self, frame: bytes, *, hdlc: bool, peer_meters: list[str]) -> None:
        self.stats.frames += 1
        opened_by: str | None = None
        try:
            apdu, address = frame_apdu(frame, hdlc=hdlc)
            parts = sealed(apdu)
            if parts is not None:
                apdu, opened_by = self._unseal(parts, candidates=peer_meters)
            notification = decode_apdu(apdu, address)
        except PushError as exc:
            self.stats.undecodable += 1
            log.warning("push listener: frame dropped, %s: %s", exc, frame[:_LOGGED_BYTES].hex())
            return
        if opened_by is not None and parts is not None:
            last = self._counters.get(opened_by)
            if last is not None and parts.invocation_counter <= last:
                self.stats.replayed += 1
                log.warning("push of meter %s replays invocation counter %d (last %d); dropped", opened_by,
                            parts.invocation_counter, last)
                return
            self._counters[opened_by] = parts.invocation_counter
        meter_id = self._meter_of(notification, hdlc=hdlc, candidates=[opened_by] if opened_by else peer_meters)
        if meter_id is None:
            self.stats.unknown_meter += 1
            return
        if opened_by is not None and meter_id != opened_by:
            self.stats.unknown_meter += 1
            log.warning("push opened with meter %s's keys names device %r (meter %s); dropped", opened_by,
                        notification.device_name, meter_id)
            return
        events = notification_events(notification, meter_id, received_at=self._clock())
        if events:
            self.stats.events += len(events)
            self._sink(events)

    def _unseal(self, parts: Sealed, *, candidates: list[str]) -> tuple[bytes, str]:
        """The plain APDU and the meter whose keys opened it; PushError if none of theirs does."""
        known = self._by_title.get(parts.system_title)
        order = ([known] if known in candidates else []) + [m for m in candidates if m != known]
        for meter_id in order:
            for config in self._keys_of(meter_id):
                if config.block_cipher_key is None or config.authentication_key is None:
                    continue
                try:
                    plain = unseal(parts, block_cipher_key=config.key_bytes("block_cipher_key"),
                                   authentication_key=config.key_bytes("authentication_key"))
                except PushError:
                    continue
                self._by_title[parts.system_title] = meter_id
                return plain, meter_id
        raise PushError(f"ciphered push from system title {parts.system_title.hex()}: no key of the "
                        f"{len(candidates)} meter(s) that could have sent it opens it")

    def _meter_of(self, notification: Notification, *, hdlc: bool, candidates: list[str]) -> str | None:
        if notification.device_name is not None:
            meter_id = self._by_name.get(notification.device_name)
            if meter_id is None:
                log.warning("push from unknown device %r dropped", notification.device_name)
            return meter_id
        if hdlc:
            candidates = [m.meter_id for m in self._meters
                          if m.meter_id in candidates and m.server_address == notification.hdlc_address]
        if len(candidates) == 1:
            return candidates[0]
        log.warning("event notification of %s dropped: it names no device and %d meters could have sent it",
                    sorted(notification.values), len(candidates))
        return None
