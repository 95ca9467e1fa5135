"""A DSMR 5 P1 meter simulator: valid telegrams with advancing registers, on a pty or a pyserial port.

:class:`MeterModel` is the pure part: telegram ``n`` has values that depend only on the
model's parameters and ``n``, so a test can predict every value the reader will see.
:class:`P1Simulator` writes those telegrams at an interval to a pty it creates (the reader
opens ``port_path``) or to a pyserial port or URL, and can corrupt the CRC of, or cut short,
every Nth telegram to exercise the reader's error handling.

Meter time advances by ``step`` per telegram (default one second, as a DSMR 5 meter sends),
independent of the wall-clock ``interval``, so a fast test still gets distinct timestamps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tty
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, Decimal

import serial

from edge.p1.smarty import encrypt_telegram
from edge.p1.telegram import GasValue, P1Values, PowerFailure, build_telegram, is_eu_summer_time
from edge.p1.versions import VERSIONS, build_version_telegram

logger = logging.getLogger(__name__)

_JOULES_PER_KWH = 3_600_000
_GAS_PERIOD = timedelta(minutes=5)
_MILLI = Decimal("0.001")


@dataclass(frozen=True, slots=True, kw_only=True)
class MeterModel:
    """Deterministic register values of a simulated meter; ``values_at(n)`` is telegram n."""

    start: datetime
    step: timedelta = timedelta(seconds=1)
    equipment_id: str = "E0000000000000001"
    initial_delivered_kwh: tuple[Decimal, Decimal] = (Decimal("1000.000"), Decimal("2000.000"))
    initial_returned_kwh: tuple[Decimal, Decimal] = (Decimal("10.000"), Decimal("20.000"))
    gas_channel: int | None = 1
    gas_equipment_id: str = "G0000000000000001"
    initial_gas_m3: Decimal = Decimal("500.000")

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.start.microsecond:
            raise ValueError("start must be timezone-aware and on a whole second")
        if self.step.total_seconds() < 1 or self.step.microseconds:
            raise ValueError("step must be a whole number of seconds, at least one")

    def timestamp(self, n: int) -> datetime:
        return self.start + n * self.step

    @staticmethod
    def power_delivered_w(n: int) -> int:
        return 200 + (n * 37) % 1800

    @staticmethod
    def power_returned_w(n: int) -> int:
        return (n * 53) % 400 if n % 4 == 0 else 0

    def tariff(self, n: int) -> int:
        """DSMR tariff 1 (low) at night and at weekends, 2 (normal) otherwise, in Dutch local time."""
        moment = self.timestamp(n)
        local = moment.astimezone(UTC) + timedelta(hours=2 if is_eu_summer_time(moment) else 1)
        return 1 if local.weekday() >= 5 or local.hour < 7 or local.hour >= 23 else 2

    def values_at(self, n: int) -> P1Values:
        """The values of telegram ``n`` (0-based); O(n), for tests. The simulator goes incrementally."""
        state = _Accumulator(self)
        for i in range(n):
            state.add(i)
        return state.values(n)


class _Accumulator:
    """Energy registers integrated telegram by telegram, in whole joules so nothing drifts."""

    def __init__(self, model: MeterModel) -> None:
        self.model = model
        self.delivered_j = [int(k * _JOULES_PER_KWH) for k in model.initial_delivered_kwh]
        self.returned_j = [int(k * _JOULES_PER_KWH) for k in model.initial_returned_kwh]

    def add(self, i: int) -> None:
        seconds = int(self.model.step.total_seconds())
        t = self.model.tariff(i) - 1
        self.delivered_j[t] += self.model.power_delivered_w(i) * seconds
        self.returned_j[t] += self.model.power_returned_w(i) * seconds

    def values(self, n: int) -> P1Values:
        m = self.model
        moment = m.timestamp(n)
        p_in, p_out = m.power_delivered_w(n), m.power_returned_w(n)
        gas = ()
        if m.gas_channel is not None:
            gas_time = _floor(moment, _GAS_PERIOD)
            periods = (gas_time - _floor(m.start, _GAS_PERIOD)) // _GAS_PERIOD
            gas = (GasValue(channel=m.gas_channel, equipment_id=m.gas_equipment_id, timestamp=gas_time,
                            m3=m.initial_gas_m3 + Decimal("0.012") * periods),)
        return P1Values(
            timestamp=moment,
            equipment_id=m.equipment_id,
            delivered_t1=_kwh(self.delivered_j[0]),
            delivered_t2=_kwh(self.delivered_j[1]),
            returned_t1=_kwh(self.returned_j[0]),
            returned_t2=_kwh(self.returned_j[1]),
            tariff=m.tariff(n),
            power_delivered=Decimal(p_in) / 1000,
            power_returned=Decimal(p_out) / 1000,
            voltages=tuple(Decimal(2300 + (n * k) % 11 - 5) / 10 for k in (7, 5, 3)),  # type: ignore[arg-type]
            currents=(p_in // 230, 0, 0),
            power_failures=3,
            long_power_failures=1,
            failure_log=(PowerFailure(m.start - timedelta(days=3), timedelta(seconds=240)),),
            gas=gas,
        )


def _kwh(joules: int) -> Decimal:
    return (Decimal(joules) / _JOULES_PER_KWH).quantize(_MILLI, rounding=ROUND_DOWN)


def _floor(moment: datetime, period: timedelta) -> datetime:
    seconds = int(moment.timestamp())
    return datetime.fromtimestamp(seconds - seconds % int(period.total_seconds()), tz=moment.tzinfo)


class P1Simulator:
    """Writes DSMR telegrams (5.0 by default, or any of ``VERSIONS``) at an interval; ``await start()``, read ``port_path``, ``await stop()``.

    With ``port=None`` it creates a pty: call :meth:`open` first if the reader must be
    listening before the first telegram (pyserial flushes input when it opens a port).
    """

    def __init__(
        self,
        *,
        model: MeterModel | None = None,
        interval: float = 1.0,
        count: int | None = None,
        port: str | serial.SerialBase | None = None,
        corrupt_crc_every: int | None = None,
        truncate_every: int | None = None,
        dsmr: str = "5.0",
        smarty_key: bytes | None = None,
        smarty_authentication_key: bytes = bytes(16),
    ) -> None:
        if interval < 0:
            raise ValueError("interval must not be negative")
        if dsmr not in VERSIONS:
            raise ValueError(f"unknown DSMR version {dsmr!r}; one of {', '.join(VERSIONS)}")
        if (dsmr == "smarty") != (smarty_key is not None):
            raise ValueError("a Smarty meter, and only one, needs smarty_key (its AES-128 key)")
        # Which DSMR version it speaks (edge/p1/versions.py); a Smarty meter encrypts each telegram.
        self.dsmr = dsmr
        self._smarty_keys = (smarty_key, smarty_authentication_key)
        for name, every in (("corrupt_crc_every", corrupt_crc_every), ("truncate_every", truncate_every)):
            if every is not None and every < 1:
                raise ValueError(f"{name} must be at least 1")
        self.model = model
        self.interval = interval
        self.count = count
        self.corrupt_crc_every = corrupt_crc_every
        self.truncate_every = truncate_every
        self._port = port
        self._serial: serial.SerialBase | None = None
        self._master: int | None = None
        self._slave: int | None = None
        self._path: str | None = None
        self._task: asyncio.Task[None] | None = None
        self.done = asyncio.Event()
        self.sent = 0
        self.corrupted = 0
        self.truncated = 0

    @property
    def port_path(self) -> str:
        """Where a reader connects: the pty's slave path, or the port given."""
        if self._path is None:
            raise RuntimeError("simulator is not open yet")
        return self._path

    def telegram_kind(self, n: int) -> str:
        """What telegram ``n`` will be on the wire: ``ok``, ``corrupt`` (bad CRC) or ``truncated``."""
        if self.truncate_every and (n + 1) % self.truncate_every == 0:
            return "truncated"
        if self.corrupt_crc_every and (n + 1) % self.corrupt_crc_every == 0:
            return "corrupt"
        return "ok"

    def open(self) -> str:
        """Create the pty (or open the port) without sending anything yet; return ``port_path``."""
        if self._path is not None:
            return self._path
        if self._port is None:
            self._master, self._slave = os.openpty()
            # Raw mode now, before any reader: a cooked pty would turn CR into LF and echo data back.
            tty.setraw(self._slave)
            os.set_blocking(self._master, False)
            self._path = os.ttyname(self._slave)
        elif isinstance(self._port, str):
            self._serial = serial.serial_for_url(self._port, baudrate=115200, timeout=0)
            self._path = self._port
        else:
            self._serial = self._port
            self._path = self._port.port or "pyserial"
        return self._path

    async def start(self) -> None:
        """Open if needed and start writing telegrams in a background task."""
        self.open()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"p1-simulator {self._path}")

    async def stop(self) -> None:
        """Stop writing and close the pty (a reader on it then sees the port fail)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for fd in (self._master, self._slave):
            if fd is not None:
                os.close(fd)
        self._master = self._slave = None
        if self._serial is not None and isinstance(self._port, str):
            self._serial.close()
        self._serial = None

    async def __aenter__(self) -> P1Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        model = self.model or MeterModel(start=datetime.now(UTC).replace(microsecond=0))
        state = _Accumulator(model)
        began = loop.time()
        n = 0
        while self.count is None or n < self.count:
            data = self._wire_bytes(state.values(n), n)
            await self._write(data)
            self.sent += 1
            state.add(n)
            n += 1
            # Pace against the start time so the interval does not drift with write time.
            await asyncio.sleep(max(0.0, began + n * self.interval - loop.time()))
        self.done.set()

    def _wire_bytes(self, values: P1Values, n: int) -> bytes:
        kind = self.telegram_kind(n)
        if kind == "corrupt":
            self.corrupted += 1
        if self.dsmr == "5.0":
            data = build_telegram(values, corrupt_crc=kind == "corrupt")
        else:
            data = build_version_telegram(values, self.dsmr, corrupt_crc=kind == "corrupt")
        if self.dsmr == "smarty":
            key, authentication_key = self._smarty_keys
            assert key is not None
            data = encrypt_telegram(data, key=key, system_title=b"SAGSIM01", frame_counter=n + 1,
                                    authentication_key=authentication_key)
        if kind == "truncated":
            self.truncated += 1
            return data[: len(data) // 2]
        return data

    async def _write(self, data: bytes) -> None:
        if self._serial is not None:
            self._serial.write(data)
            return
        assert self._master is not None
        view = memoryview(data)
        while view:
            try:
                written = os.write(self._master, view)
            except BlockingIOError:
                # The pty buffer is full (reader slow or absent): wait for room rather than lose
                # telegrams a deterministic test counts on.
                await _writable(self._master)
                continue
            view = view[written:]


async def _writable(fd: int) -> None:
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    loop.add_writer(fd, lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    finally:
        loop.remove_writer(fd)
