"""The simulated meter's pushes: its push setup objects (COSEM class 40) and what they send.

A :class:`MeterPusher` sends a data notification through the push setup that fits the
occasion (``0.1.25.9.0.255`` with the event code for a power failure, a restore, a cover
opened or the disconnector switching; ``0.0.25.9.0.255`` with the alarm register when an
alarm bit is raised) to the model's ``push_destination``: ``host:port`` over TCP (WRAPPER),
or a serial device path (HDLC). Like a meter, it connects per push and tries a few times when
nobody listens. :class:`ModelPushSetup` serves the same objects to a client, and writing
attribute 3 (send destination and method) changes where the meter pushes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass
from typing import Any

from edge.dlms import gurux_fixes

gurux_fixes.apply()

from gurux_dlms.enums.DataType import DataType  # noqa: E402
from gurux_dlms.enums.InterfaceType import InterfaceType  # noqa: E402
from gurux_dlms.enums.Security import Security  # noqa: E402
from gurux_dlms.GXDLMSNotify import GXDLMSNotify  # noqa: E402
from gurux_dlms.objects.GXDLMSCaptureObject import GXDLMSCaptureObject  # noqa: E402
from gurux_dlms.objects.GXDLMSData import GXDLMSData  # noqa: E402
from gurux_dlms.objects.GXDLMSPushSetup import GXDLMSPushSetup  # noqa: E402
from gurux_dlms.secure.GXDLMSSecureNotify import GXDLMSSecureNotify  # noqa: E402

from edge.dlms.alarms import ALARM_REGISTER_OBIS, STANDARD_EVENT_CODE_OBIS, alarm_bit  # noqa: E402
from edge.dlms.cosem_objects import DEVICE_NAME_OBIS  # noqa: E402
from edge.dlms.meter_model import MeterModel  # noqa: E402
from edge.dlms.push import ALARM_PUSH_OBIS, EVENT_PUSH_OBIS  # noqa: E402

logger = logging.getLogger(__name__)

POWER_FAILURE, POWER_RESTORED = 1, 2
METER_COVER_REMOVED, METER_COVER_CLOSED = 44, 45
REMOTE_DISCONNECTION, REMOTE_RECONNECTION = 62, 63


class ModelPushSetup(GXDLMSPushSetup):
    """A push setup whose destination is the model's (attribute 3 reads and writes it)."""

    def __init__(self, model: MeterModel, obis: str, layout: tuple[str, ...]) -> None:
        super().__init__(obis)
        self._model = model
        self.numberOfRetries = 3
        self.repetitionDelay = 1
        self.pushObjectList = [(self, GXDLMSCaptureObject(1, 0)),
                               *((GXDLMSData(ln), GXDLMSCaptureObject(2, 0)) for ln in layout)]

    def getValue(self, settings: Any, e: Any) -> Any:
        if e.index == 3:
            self.destination = self._model.push_destination
        return super().getValue(settings, e)

    def setValue(self, settings: Any, e: Any) -> None:
        super().setValue(settings, e)
        if e.index == 3:
            self._model.push_destination = self.destination or None


def push_setup_objects(model: MeterModel) -> list[ModelPushSetup]:
    """The push setups a simulated meter serves."""
    return [ModelPushSetup(model, ALARM_PUSH_OBIS, (DEVICE_NAME_OBIS, ALARM_REGISTER_OBIS)),
            ModelPushSetup(model, EVENT_PUSH_OBIS, (DEVICE_NAME_OBIS, STANDARD_EVENT_CODE_OBIS))]


@dataclass(frozen=True, repr=False)
class PushCipher:
    """A meter's global keys and system title: its pushes go general-glo-ciphered with them."""

    system_title: bytes
    block_cipher_key: bytes
    authentication_key: bytes


class MeterPusher:
    """Sends the simulated meter's pushes; ``close()`` waits for the ones under way. With a
    ``cipher`` (a meter with HLS security) each push is authenticated and encrypted under the
    meter's own invocation counter, which rises with every push."""

    def __init__(self, *, model: MeterModel, client_address: int = 1, server_address: int = 1,
                 retries: int = 3, retry_delay: float = 0.5, cipher: PushCipher | None = None) -> None:
        self.model = model
        self.cipher = cipher
        self.client_address = client_address
        self.server_address = server_address
        self.retries = retries
        self.retry_delay = retry_delay
        self.sent = 0
        self.failed = 0
        self._tasks: set[asyncio.Task[None]] = set()
        model.on_output_change = self._output_changed

    # --- occasions ----------------------------------------------------------------------------

    async def power_failure(self) -> None:
        """The last gasp: the meter logs and pushes a power failure."""
        await self.push_event(POWER_FAILURE)

    async def power_restored(self) -> None:
        await self.push_event(POWER_RESTORED)

    async def open_cover(self) -> None:
        """Someone opened the meter cover: logged in the fraud log and pushed, with the alarm bit set."""
        await self.push_event(METER_COVER_REMOVED)
        await self.raise_alarm(alarm_bit("FRAUD_ATTEMPT"))

    async def raise_alarm(self, bit: int) -> None:
        """Set an alarm register bit and push the register."""
        self.model.raise_alarm(bit)
        await self.push(ALARM_PUSH_OBIS, self.model.alarm_bits, DataType.UINT32)

    async def push_event(self, code: int) -> None:
        """Log an event code and push it."""
        self.model.log_event(code)
        await self.push(EVENT_PUSH_OBIS, code, DataType.UINT8)

    def _output_changed(self, closed: bool) -> None:
        # Called from a COSEM method or a scheduled switch (inside the server's loop): push
        # without blocking the reply.
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            logger.info("meter %s: disconnector switched outside the event loop; not pushed", self.model.serial)
            return
        task = loop.create_task(
            self.push_event(REMOTE_RECONNECTION if closed else REMOTE_DISCONNECTION), name="dlms-sim-push")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- sending ------------------------------------------------------------------------------

    def frames(self, push_obis: str, value: int, data_type: DataType, *, hdlc: bool) -> list[bytes]:
        """The frames of one data notification from ``push_obis`` carrying ``value``."""
        interface = InterfaceType.HDLC if hdlc else InterfaceType.WRAPPER
        if self.cipher is None:
            notify = GXDLMSNotify(True, self.client_address, self.server_address, interface)
        else:
            notify = GXDLMSSecureNotify(True, self.client_address, self.server_address, interface)
            ciphering = notify.ciphering
            ciphering.security = Security.AUTHENTICATION_ENCRYPTION
            ciphering.systemTitle = bytearray(self.cipher.system_title)
            ciphering.blockCipherKey = bytearray(self.cipher.block_cipher_key)
            ciphering.authenticationKey = bytearray(self.cipher.authentication_key)
            ciphering.invocationCounter = self.model.invocation_counter
        layout = {ALARM_PUSH_OBIS: ALARM_REGISTER_OBIS, EVENT_PUSH_OBIS: STANDARD_EVENT_CODE_OBIS}[push_obis]
        setup = GXDLMSPushSetup(push_obis)
        name = GXDLMSData(DEVICE_NAME_OBIS)
        name.value = self.model.serial.encode("ascii")
        name.setDataType(2, DataType.OCTET_STRING)
        data = GXDLMSData(layout)
        data.value = value
        data.setDataType(2, data_type)
        setup.pushObjectList = [(setup, GXDLMSCaptureObject(1, 0)), (name, GXDLMSCaptureObject(2, 0)),
                                (data, GXDLMSCaptureObject(2, 0))]
        frames = [bytes(frame) for frame in notify.generatePushSetupMessages(self.model.meter_now(), setup)]
        if self.cipher is not None:  # a counter is never used twice with one key
            self.model.invocation_counter = max(self.model.invocation_counter + 1,
                                                notify.ciphering.invocationCounter)
        return frames

    async def push(self, push_obis: str, value: int, data_type: DataType) -> None:
        destination = self.model.push_destination
        if destination is None:
            logger.info("meter %s: no push destination; %s not pushed", self.model.serial, push_obis)
            return
        hdlc = destination.startswith("/")
        frames = self.frames(push_obis, value, data_type, hdlc=hdlc)
        for attempt in range(self.retries + 1):
            try:
                await (self._write_serial(destination, frames) if hdlc else self._write_tcp(destination, frames))
            except OSError as exc:
                logger.info("meter %s: push to %s failed (%s), attempt %d", self.model.serial, destination, exc,
                            attempt + 1)
                await asyncio.sleep(self.retry_delay)
                continue
            self.sent += 1
            return
        self.failed += 1
        logger.warning("meter %s: gave up pushing %s to %s", self.model.serial, push_obis, destination)

    @staticmethod
    async def _write_tcp(destination: str, frames: list[bytes]) -> None:
        host, _, port = destination.rpartition(":")
        _, writer = await asyncio.open_connection(host, int(port))
        try:
            for frame in frames:
                writer.write(frame)
            await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    @staticmethod
    async def _write_serial(path: str, frames: list[bytes]) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_NOCTTY)
        try:
            for frame in frames:
                os.write(fd, frame)
        finally:
            os.close(fd)

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
