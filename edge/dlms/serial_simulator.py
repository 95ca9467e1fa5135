"""A simulated DLMS/COSEM meter on a serial port speaking HDLC, for tests, benches and the demo.

The serial counterpart of :class:`edge.dlms.simulator.DlmsMeterSimulator`: it opens one end
of a serial line (a real port, or one end of :class:`edge.modbus.nullmodem.PtyNullModem`) and
answers HDLC frames with one gurux server. A serial line has no "connection": the client's
SNRM starts an HDLC link and DISC ends it, and gurux's server resets its state on SNRM, so one
server serves every association made over the line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from edge.dlms.cosem_server import CosemServer, InvocationGuard, ServerSecurity
from edge.dlms.links import FramingError, SerialWriter, open_serial, read_hdlc_frame
from edge.dlms.meter_model import MeterModel

logger = logging.getLogger(__name__)


class DlmsSerialMeterSimulator:
    """A simulated DLMS meter answering HDLC on a serial port; ``async with`` starts and stops it."""

    def __init__(self, *, port: str, model: MeterModel | None = None, security: ServerSecurity | None = None,
                 baudrate: int = 9600, name: str = "sim-serial-meter") -> None:
        self.port = port
        self.baudrate = baudrate
        self.model = model or MeterModel()
        self.security = security or ServerSecurity()
        self.name = name
        self.guard = InvocationGuard()
        self.frames_served = 0
        self._writer: SerialWriter | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        reader, self._writer = await open_serial(self.port, baudrate=self.baudrate, write_timeout=5.0)
        server = CosemServer(model=self.model, security=self.security, guard=self.guard, meter_name=self.name,
                             hdlc=True)
        self._task = asyncio.create_task(self._serve(reader, self._writer, server), name=f"dlms-hdlc-{self.name}")
        logger.info("DLMS HDLC simulator %s on %s (%s)", self.name, self.port, self.security)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        logger.info("DLMS HDLC simulator %s stopped", self.name)

    async def __aenter__(self) -> DlmsSerialMeterSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: SerialWriter, server: CosemServer) -> None:
        while True:
            try:
                frame = await read_hdlc_frame(reader)
            except FramingError as exc:
                logger.info("meter %s: dropped a bad HDLC frame: %s", self.name, exc)
                continue
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            reply = server.handle_frame(frame)
            if reply:
                self.frames_served += 1
                writer.write(reply)
