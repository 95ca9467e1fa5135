"""Async Modbus adapter: reads a device's points into an OMDP MeterReading and writes commands.

The I/O half of the Modbus edge: planning, decoding and mapping are pure functions in
:mod:`edge.modbus.plan` and :mod:`edge.modbus.mapping`; this module only talks to pymodbus and
turns its failures into :mod:`edge.modbus.errors` types.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.pdu import ModbusPDU

from broker.lean import MeterReading
from devices.modbus.data_types import DataType
from devices.modbus.register_map import Point, RegisterMap, RegisterType, ScheduleBlock
from edge.modbus.codec import CodecError
from edge.modbus.errors import (
    EXCEPTION_NAMES,
    TRANSIENT_EXCEPTION_CODES,
    ModbusCommunicationError,
    ModbusProtocolError,
    PointNotWritableError,
    PointValueError,
    UnknownPointError,
)
from edge.modbus.mapping import to_meter_reading
from edge.modbus.plan import ReadRequest, Value, decode_response, encode_point, plan_reads
from edge.modbus.schedule import decode_schedule, encode_schedule
from edge.switching import ScheduleError, SwitchPoint

logger = logging.getLogger(__name__)

ModbusClient = AsyncModbusTcpClient | AsyncModbusSerialClient


class ModbusAdapter:
    """Reads and commands one Modbus device (one unit id) over a pymodbus async client.

    The client may be shared by several adapters on one serial line or TCP gateway; whoever
    created it closes it. Callers serialise requests per bus (the poller's bus semaphore).
    """

    def __init__(self, *, register_map: RegisterMap, meter_id: str, client: ModbusClient,
                 unit_id: int = 1, clock: Callable[[], datetime] | None = None) -> None:
        self.register_map = register_map
        self.meter_id = meter_id
        self.client = client
        self.unit_id = unit_id
        self._clock = clock or (lambda: datetime.now(UTC))
        self._plan = plan_reads(register_map)

    @property
    def requests_per_read(self) -> int:
        """How many Modbus requests one full read takes (after grouping)."""
        return len(self._plan)

    async def read_values(self) -> dict[str, Value]:
        """Every point's current engineering value, by name."""
        values: dict[str, Value] = {}
        for request in self._plan:
            data = await self._read(request)
            values.update(decode_response(request, data))
        return values

    async def read(self, reading_time: datetime | None = None) -> MeterReading:
        """One OMDP MeterReading of every point, stamped ``reading_time`` (default: now, UTC)."""
        stamp = reading_time or self._clock()
        if stamp.tzinfo is None:
            raise ValueError("reading_time must be timezone-aware")
        values = await self.read_values()
        return to_meter_reading(register_map=self.register_map, values=values, meter_id=self.meter_id,
                                reading_time=stamp.astimezone(UTC))

    async def write_point(self, name: str, value: Value) -> None:
        """Write ``value`` (engineering units; bool for coils) to point ``name``.

        Raises UnknownPointError, PointNotWritableError or PointValueError before sending
        anything, and ModbusCommunicationError / ModbusProtocolError for what the device does.
        """
        point = self._writable_point(name)
        payload = self._check_value(point, value)
        if point.register_type is RegisterType.COIL:
            assert isinstance(payload, bool)
            await self._call(f"write coil {point.name}",
                             lambda: self.client.write_coil(point.address, payload, device_id=self.unit_id))
        else:
            assert isinstance(payload, list)
            if len(payload) == 1:
                await self._call(f"write register {point.name}",
                                 lambda: self.client.write_register(point.address, payload[0], device_id=self.unit_id))
            else:
                await self._call(f"write registers {point.name}",
                                 lambda: self.client.write_registers(point.address, payload, device_id=self.unit_id))
        logger.info("meter %s: wrote %s = %r", self.meter_id, name, value)

    # --- the relays' weekly schedule -------------------------------------------------------------

    async def write_schedule(self, points: list[SwitchPoint]) -> list[SwitchPoint]:
        """Write the schedule block in one request and return what the device holds, read back."""
        block = self._schedule_block()
        words = encode_schedule(points, block)
        await self._call("write schedule", lambda: self.client.write_registers(block.address, words,
                                                                                device_id=self.unit_id))
        held = await self.read_schedule()
        logger.info("meter %s: schedule written, %d switch points", self.meter_id, len(held))
        return held

    async def read_schedule(self) -> list[SwitchPoint]:
        block = self._schedule_block()
        count = block.end - block.address
        response = await self._call("read schedule", lambda: self.client.read_holding_registers(
            block.address, count=count, device_id=self.unit_id))
        try:
            return decode_schedule(list(response.registers), block)
        except ScheduleError as exc:
            raise ModbusProtocolError(f"meter {self.meter_id}: {exc}", meter_id=self.meter_id) from exc

    def _schedule_block(self) -> ScheduleBlock:
        if self.register_map.schedule is None:
            raise UnknownPointError(f"{self.register_map.name} keeps no switching schedule")
        return self.register_map.schedule

    # --- internals ----------------------------------------------------------------------------

    def _writable_point(self, name: str) -> Point:
        try:
            point = self.register_map.point(name)
        except KeyError:
            known = ", ".join(p.name for p in self.register_map.points if p.writable)
            raise UnknownPointError(f"{self.register_map.name} has no point {name!r}; writable points: {known}") from None
        if not point.writable:
            raise PointNotWritableError(f"point {name!r} of {self.register_map.name} is read-only")
        return point

    @staticmethod
    def _check_value(point: Point, value: Value) -> list[int] | bool:
        if point.type is DataType.BOOL:
            if not isinstance(value, bool):
                raise PointValueError(f"point {point.name!r} is a coil: write True or False, not {value!r}")
            return value
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise PointValueError(f"point {point.name!r} needs a finite number, not {value!r}")
        bounds = point.write_range()
        if bounds is not None and not bounds[0] <= value <= bounds[1]:
            raise PointValueError(f"{value} is out of range for point {point.name!r} ({bounds[0]:g}..{bounds[1]:g})")
        try:
            return encode_point(point, value)
        except CodecError as exc:
            raise PointValueError(f"point {point.name!r}: {exc}") from exc

    async def _read(self, request: ReadRequest) -> list[int] | list[bool]:
        address, count, unit = request.address, request.count, self.unit_id
        calls: dict[RegisterType, Callable[[], Awaitable[ModbusPDU]]] = {
            RegisterType.HOLDING: lambda: self.client.read_holding_registers(address, count=count, device_id=unit),
            RegisterType.INPUT: lambda: self.client.read_input_registers(address, count=count, device_id=unit),
            RegisterType.COIL: lambda: self.client.read_coils(address, count=count, device_id=unit),
            RegisterType.DISCRETE: lambda: self.client.read_discrete_inputs(address, count=count, device_id=unit),
        }
        what = f"read {count} {request.register_type.value} from {address}"
        response = await self._call(what, calls[request.register_type])
        if request.register_type.is_bit:
            return list(response.bits[:count])
        return list(response.registers)

    async def _call(self, what: str, request: Callable[[], Awaitable[ModbusPDU]]) -> ModbusPDU:
        await self._ensure_connected()
        try:
            response = await request()
        except (ConnectionException, ModbusIOException, asyncio.TimeoutError, OSError) as exc:
            # A late answer could still arrive and be taken for the next request's: start afresh.
            self.client.close()
            raise ModbusCommunicationError(f"meter {self.meter_id}: {what}: {exc}", meter_id=self.meter_id) from exc
        except ModbusException as exc:
            raise ModbusProtocolError(f"meter {self.meter_id}: {what}: {exc}", meter_id=self.meter_id) from exc
        if response.isError():
            code = getattr(response, "exception_code", None)
            text = f"meter {self.meter_id}: {what}: exception {code} ({EXCEPTION_NAMES.get(code or 0, 'unknown')})"
            if code in TRANSIENT_EXCEPTION_CODES:
                raise ModbusCommunicationError(text, meter_id=self.meter_id)
            raise ModbusProtocolError(text, meter_id=self.meter_id, exception_code=code)
        return response

    async def _ensure_connected(self) -> None:
        if self.client.connected:
            return
        if not await self.client.connect():
            raise ModbusCommunicationError(f"meter {self.meter_id}: cannot connect to {self.client}",
                                           meter_id=self.meter_id)
