"""An asyncio DLMS/COSEM meter simulator over TCP (WRAPPER), for tests, benches and the demo.

One :class:`DlmsMeterSimulator` is one meter: a listening socket, a shared
:class:`MeterModel` and one gurux server (:class:`CosemServer`) per connection, each
connection an asyncio protocol that answers a frame in the callback that received it. Faults for
tests: ``unresponsive`` (frames are read and never answered, to exercise timeouts and
retries), ``drop_after_frames`` (the connection is cut after that many more frames, e.g. in
the middle of an image transfer) and down windows (connections are dropped while the meter is "down", to exercise
gap backfill from the load profile).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from datetime import datetime

from devices.profiles import load_profile
from devices.profiles.power_quality import PowerQualitySpec
from edge.dlms.config import SecurityMode
from edge.dlms.cosem_server import CosemServer, InvocationGuard, ServerSecurity
from edge.dlms.meter_model import MeterModel
from edge.dlms.sim_push import MeterPusher, PushCipher

logger = logging.getLogger(__name__)

WRAPPER_HEADER = 8


class DlmsMeterSimulator:
    """A simulated DLMS meter listening on TCP; ``async with`` starts and stops it."""

    def __init__(self, *, model: MeterModel | None = None, security: ServerSecurity | None = None,
                 host: str = "127.0.0.1", port: int = 0, name: str = "sim-meter",
                 power_quality: PowerQualitySpec | None = None) -> None:
        self.model = model or MeterModel()
        # The power-quality objects it serves: those of the SMR 5 profile unless given.
        self.power_quality = power_quality or load_profile("smr-5").power_quality
        self.security = security or ServerSecurity()
        self.host = host
        self.name = name
        self.guard = InvocationGuard()
        # Data notifications to the model's push destination (power, tamper, disconnector, alarms).
        # A meter with HLS security pushes ciphered with its global keys.
        cipher = (PushCipher(system_title=self.security.system_title, block_cipher_key=self.security.block_cipher_key,
                             authentication_key=self.security.authentication_key)
                  if self.security.mode is SecurityMode.HLS_GMAC else None)
        self.pusher = MeterPusher(model=self.model, client_address=self.security.client_address,
                                  server_address=self.security.server_address, cipher=cipher)
        # When True, requests are read but never answered (a hung meter).
        self.unresponsive = False
        self._requested_port = port
        self._down_windows: list[tuple[datetime, datetime]] = []
        self._down = False
        self._server: asyncio.Server | None = None
        self._connections: set[_MeterConnection] = set()
        # Fault: drop the connection when this many more frames have arrived (None: never).
        self.drop_after_frames: int | None = None
        self.frames_served = 0
        # Image blocks answered by the hand-built path (edge.dlms.image_block), not gurux's.
        self.blocks_by_hand = 0
        self.connections_refused = 0
        self.connections_accepted = 0
        # Key changes taken (global_key_transfer); with hang_after_key_change the meter then stops
        # answering (a fault for tests: the change happened, its confirmation cannot).
        self.key_changes = 0
        self.hang_after_key_change = False

    # --- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._connection, self.host, self._requested_port)
        logger.info("DLMS simulator %s listening on %s:%d (%s)", self.name, self.host, self.port, self.security)

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        connections = list(self._connections)
        for connection in connections:
            connection.close()
        if connections:
            await asyncio.wait([c.closed for c in connections], timeout=5.0)
        await self._server.wait_closed()
        await self.pusher.close()
        self._server = None
        logger.info("DLMS simulator %s stopped", self.name)

    async def __aenter__(self) -> DlmsMeterSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("simulator is not started")
        return self._server.sockets[0].getsockname()[1]

    # --- faults ---------------------------------------------------------------------------
    def set_down(self, down: bool) -> None:
        """Take the meter off the network now (True) or bring it back (False)."""
        self._down = down
        if down:
            for connection in list(self._connections):
                connection.close()

    async def pull_power(self) -> None:
        """Cut the meter's power: it pushes its last gasp (a power failure) and stops answering."""
        await self.pusher.power_failure()
        self.set_down(True)

    async def restore_power(self) -> None:
        """Power the meter again: it answers and pushes that power returned."""
        self.set_down(False)
        await self.pusher.power_restored()

    def add_down_window(self, start: datetime, end: datetime) -> None:
        """Make the meter unreachable while the model's true time is in [start, end)."""
        if end <= start:
            raise ValueError("a down window must end after it starts")
        self._down_windows.append((start, end))

    def is_down(self) -> bool:
        if self._down:
            return True
        if not self._down_windows:  # asked for every frame: no clock read when there is no window
            return False
        now = self.model.true_now()
        return any(start <= now < end for start, end in self._down_windows)

    def _take_keys(self, keys: dict[str, bytes]) -> None:
        # From the next association on; the one that transferred them ends under the old keys.
        self.security = dataclasses.replace(self.security, **keys)
        if self.pusher.cipher is not None:  # its pushes too
            self.pusher.cipher = PushCipher(system_title=self.security.system_title,
                                            block_cipher_key=self.security.block_cipher_key,
                                            authentication_key=self.security.authentication_key)
        self.key_changes += 1
        logger.info("DLMS simulator %s took new keys (%s)", self.name, ", ".join(sorted(keys)))
        if self.hang_after_key_change:
            self.unresponsive = True

    # --- connections ----------------------------------------------------------------------
    def _connection(self) -> _MeterConnection:
        return _MeterConnection(self)

    def _server_for_connection(self) -> CosemServer:
        return CosemServer(model=self.model, security=self.security, guard=self.guard, meter_name=self.name,
                           power_quality=self.power_quality, on_keys=self._take_keys)


class _MeterConnection(asyncio.Protocol):
    """One TCP connection to a simulated meter: WRAPPER frames in, the gurux server's answers out.

    A protocol, not a stream reader/writer pair: the frame is answered in the callback that
    received it, with no task to wake per frame (an image transfer is thousands of frames).
    """

    def __init__(self, meter: DlmsMeterSimulator) -> None:
        self._meter = meter
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._server: CosemServer | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        meter = self._meter
        self._transport = transport  # type: ignore[assignment]
        meter._connections.add(self)
        if meter.is_down():
            meter.connections_refused += 1
            transport.close()
            return
        meter.connections_accepted += 1
        self._server = meter._server_for_connection()

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        while len(buffer) >= WRAPPER_HEADER and self._server is not None:
            end = WRAPPER_HEADER + int.from_bytes(buffer[6:8], "big")
            if len(buffer) < end:
                return
            frame = bytes(buffer[:end])
            del buffer[:end]
            self._frame(frame)

    def _frame(self, frame: bytes) -> None:
        meter, transport, server = self._meter, self._transport, self._server
        assert transport is not None and server is not None
        if meter.is_down():
            self.close()
            return
        if meter.drop_after_frames is not None:
            meter.drop_after_frames -= 1
            if meter.drop_after_frames <= 0:
                meter.drop_after_frames = None
                self.close()
                return
        if meter.unresponsive:
            return
        try:
            reply = server.handle_frame(frame)
        except Exception:  # a server fault ends this connection only, as a crashed meter task would
            logger.exception("DLMS simulator %s: frame handling failed; connection closed", meter.name)
            self.close()
            return
        if reply:
            meter.frames_served += 1
            transport.write(reply)

    def close(self) -> None:
        self._server_done()
        if self._transport is not None:
            self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._server_done()
        self._meter._connections.discard(self)
        if not self.closed.done():
            self.closed.set_result(None)

    def _server_done(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            self._meter.blocks_by_hand += server.fast_blocks
