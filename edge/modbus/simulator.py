"""A Modbus TCP device simulator built from a register map, for tests, benches and the demo.

Values move with time as each point's ``sim`` block says (counters rise, power follows a
sine), writable coils and holding registers keep what is written, and the device can be
stopped, restarted on the same port, or made silent (accepts requests, never answers) to
exercise retries and timeouts. A map with a schedule block keeps the relays' weekly schedule
written there and switches the relays itself when a switch point's time comes on
``wall_clock`` (whatever reads the device then sees the switched state).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime

from pymodbus import FramerType
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType as SimType
from pymodbus.simulator import SimData, SimDevice

from devices.modbus.data_types import DataType, int_range, is_float
from devices.modbus.register_map import Point, RegisterMap, RegisterType
from devices.modbus.roles import relay_points
from edge.modbus.codec import CodecError, decode, encode, to_engineering
from edge.modbus.plan import Value, encode_point
from edge.modbus.schedule import decode_schedule
from edge.switching import ScheduleError, SwitchingClock

logger = logging.getLogger(__name__)

_READ_FC = {1: RegisterType.COIL, 2: RegisterType.DISCRETE, 3: RegisterType.HOLDING, 4: RegisterType.INPUT}
_WRITE_BITS_FC = {5, 15}
_WRITE_REGS_FC = {6, 16}
# The order pymodbus expects non-shared blocks in.
_BLOCK_ORDER = (RegisterType.COIL, RegisterType.DISCRETE, RegisterType.HOLDING, RegisterType.INPUT)


class ModbusSimulator:
    """One simulated Modbus device on ``host:port`` (port 0 picks a free one at first start).

    With ``serial_port`` it speaks Modbus RTU on that serial device instead (for instance one
    end of a :class:`~edge.modbus.nullmodem.PtyNullModem`).
    """

    def __init__(self, *, register_map: RegisterMap, host: str = "127.0.0.1", port: int = 0,
                 unit_id: int = 1, clock: Callable[[], float] = time.monotonic,
                 serial_port: str | None = None, baudrate: int = 19200,
                 wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.register_map = register_map
        self.serial_port = serial_port
        self.baudrate = baudrate
        self.host = host
        self._port = port
        self.unit_id = unit_id
        self._clock = clock
        self._t0 = clock()
        self._held: dict[str, Value] = {}
        self._server: ModbusTcpServer | ModbusSerialServer | None = None
        #: When True the device reads requests but sends no answer (the client times out).
        self.silent = False
        #: Requests served, by function code; lets tests see how reads were grouped.
        self.request_counts: dict[int, int] = {}
        self._wall_clock = wall_clock
        block = register_map.schedule
        self._schedule_words = [0] * (block.end - block.address) if block else []
        #: The relays' stored schedule and the switches it made (device local time = UTC here).
        self.switching = SwitchingClock()
        self._relay_coils = {index: coil.name for index, (coil, _state) in relay_points(register_map).items()}

    @property
    def port(self) -> int:
        if self._port == 0:
            raise RuntimeError("the simulator has no port until it is started")
        return self._port

    @property
    def running(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        """Listen (again) on the simulator's port; values keep advancing from the first start."""
        if self._server is not None:
            return
        server: ModbusTcpServer | ModbusSerialServer
        if self.serial_port is not None:
            server = ModbusSerialServer(self._device(), framer=FramerType.RTU, port=self.serial_port,
                                        baudrate=self.baudrate, trace_packet=self._trace)
            await server.serve_forever(background=True)
            self._server = server
            logger.info("modbus simulator %s (RTU) on %s", self.register_map.name, self.serial_port)
            return
        server = ModbusTcpServer(self._device(), address=(self.host, self._port), trace_packet=self._trace)
        await server.serve_forever(background=True)
        if self._port == 0:
            self._port = server.transport.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._server = server
        logger.info("modbus simulator %s listening on %s:%d", self.register_map.name, self.host, self._port)

    async def stop(self) -> None:
        """Stop listening and drop every connection."""
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()

    async def __aenter__(self) -> ModbusSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # --- values ---------------------------------------------------------------------------

    def settle(self) -> None:
        """Switch the relays for every schedule moment that came due since the last look."""
        for index, closed in self.switching.settle(self._wall_clock()).items():
            if index in self._relay_coils:
                self._held[self._relay_coils[index]] = closed

    def value(self, name: str) -> Value:
        """The engineering value point ``name`` shows now."""
        self.settle()
        point = self.register_map.point(name)
        if name in self._held:
            return self._held[name]
        sim = point.sim
        elapsed = self._clock() - self._t0
        if sim.kind == "mirror":
            assert sim.of is not None
            return self.value(sim.of)
        if sim.kind == "counter":
            number = sim.value + sim.rate * elapsed
        elif sim.kind == "wave":
            number = sim.value + sim.amplitude * math.sin(2 * math.pi * elapsed / sim.period)
        else:
            number = sim.value
        return bool(number) if point.type is DataType.BOOL else number

    def set_value(self, name: str, value: Value) -> None:
        """Pin a point to ``value`` (as if written), e.g. to put the device in a fault state."""
        self.register_map.point(name)
        self._held[name] = value

    # --- pymodbus plumbing -------------------------------------------------------------------

    def _trace(self, sending: bool, data: bytes) -> bytes:
        return b"" if sending and self.silent else data

    def _device(self) -> SimDevice:
        blocks: list[list[SimData]] = []
        for register_type in _BLOCK_ORDER:
            points = self.register_map.by_register(register_type)
            if register_type.is_bit:
                block = [SimData(p.address, values=False, datatype=SimType.BITS) for p in points]
                # pymodbus needs every block non-empty: park an unused bit at the very top.
                blocks.append(block or [SimData(65535, values=False, datatype=SimType.BITS)])
            else:
                block = [SimData(p.address, values=[0] * p.register_count, datatype=SimType.REGISTERS)
                         for p in points]
                schedule = self.register_map.schedule
                if register_type is RegisterType.HOLDING and schedule is not None:
                    block.append(SimData(schedule.address, values=[0] * (schedule.end - schedule.address),
                                         datatype=SimType.REGISTERS))
                    block.sort(key=lambda data: data.address)
                blocks.append(block or [SimData(65535, datatype=SimType.INVALID)])
        return SimDevice(self.unit_id, simdata=(blocks[0], blocks[1], blocks[2], blocks[3]),
                         action=self._action)

    async def _action(self, function_code: int, start_address: int, address: int, count: int,
                      registers: list[int], set_values: list[int] | list[bool] | None) -> ExcCodes | None:
        self.request_counts[function_code] = self.request_counts.get(function_code, 0) + 1
        if set_values is not None and function_code in _WRITE_BITS_FC:
            return self._write_bits(address, [bool(v) for v in set_values])
        if set_values is not None and function_code in _WRITE_REGS_FC:
            return self._write_registers(address, [int(v) for v in set_values])
        register_type = _READ_FC.get(function_code)
        if register_type is None:
            return None
        self.settle()
        if register_type is RegisterType.HOLDING and self._in_schedule(address, count):
            assert self.register_map.schedule is not None
            offset = address - self.register_map.schedule.address
            registers[address - start_address:address - start_address + count] = \
                self._schedule_words[offset:offset + count]
            return None
        for point in self.register_map.by_register(register_type):
            if register_type.is_bit:
                index, bit = point.address // 16 - start_address, point.address % 16
                if self.value(point.name):
                    registers[index] |= 1 << bit
                else:
                    registers[index] &= ~(1 << bit)
            else:
                offset = point.address - start_address
                registers[offset:offset + point.register_count] = self._words(point)
        return None

    def _words(self, point: Point) -> list[int]:
        value = self.value(point.name)
        try:
            words = encode_point(point, value)
        except CodecError:
            # A simulated wave or counter ran past what the type holds: show the nearest value.
            low, high = (-math.inf, math.inf) if is_float(point.type) else int_range(point.type)
            raw = min(max(float(value) / point.multiplier, low), high)
            words = encode(raw if is_float(point.type) else int(raw), point.type, point.word_order)
        assert isinstance(words, list)
        return words

    def _write_bits(self, address: int, values: list[bool]) -> ExcCodes | None:
        coils = {p.address: p for p in self.register_map.by_register(RegisterType.COIL)}
        targets = [coils.get(address + i) for i in range(len(values))]
        if any(p is None or not p.writable for p in targets):
            return ExcCodes.ILLEGAL_ADDRESS
        for point, value in zip(targets, values, strict=True):
            assert point is not None
            self._held[point.name] = value
        return None

    def _in_schedule(self, address: int, count: int) -> bool:
        block = self.register_map.schedule
        return block is not None and block.address <= address and address + count <= block.end

    def _write_schedule(self, address: int, words: list[int]) -> ExcCodes | None:
        block = self.register_map.schedule
        assert block is not None
        updated = list(self._schedule_words)
        updated[address - block.address:address - block.address + len(words)] = words
        try:
            points = decode_schedule(updated, block)
        except ScheduleError as exc:
            logger.info("modbus simulator %s: schedule refused: %s", self.register_map.name, exc)
            return ExcCodes.ILLEGAL_VALUE
        self.settle()
        self._schedule_words = updated
        self.switching.store(points, self._wall_clock())
        return None

    def _write_registers(self, address: int, words: list[int]) -> ExcCodes | None:
        if self._in_schedule(address, len(words)):
            return self._write_schedule(address, words)
        end = address + len(words)
        touched = [p for p in self.register_map.by_register(RegisterType.HOLDING) if p.address < end and address < p.end]
        covered = sum(min(end, p.end) - max(address, p.address) for p in touched)
        if covered != len(words) or any(not p.writable for p in touched):
            return ExcCodes.ILLEGAL_ADDRESS
        updates: dict[str, Value] = {}
        for point in touched:
            current = self._words(point)
            for i in range(max(address, point.address), min(end, point.end)):
                current[i - point.address] = words[i - address]
            value = to_engineering(decode(current, point.type, point.word_order), point.multiplier)
            if (point.minimum is not None and value < point.minimum) or (
                    point.maximum is not None and value > point.maximum):
                return ExcCodes.ILLEGAL_VALUE
            updates[point.name] = value
        self._held.update(updates)
        return None
