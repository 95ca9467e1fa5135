"""Read a DSMR P1 port (2.2 to 5.0, e-MUCS, Smarty) with asyncio: serial bytes in, parsed telegrams or MeterReadings out.

Works on a real tty, a pty, and any pyserial URL (``loop://``, ``socket://``...). When the
port has a file descriptor the event loop watches it (``add_reader``) and reads without
blocking; a URL without one is polled by a small task. No threads either way.

A telegram with a bad CRC or bad content is counted, logged as a warning (cut short) and
skipped; it never stops the loop. A port that fails (cable pulled, pty closed) ends the
iteration with :class:`P1PortError`; reopening is the caller's job (the concentrator backs off).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import serial

from broker.errors import Unavailable
from broker.lean import MeterReading
from devices.adapter_config import SmartMeterAdapterConfig
from edge.p1.framer import DEFAULT_MAX_SIZE, TelegramFramer
from edge.p1.mapping import P1Mapper
from edge.p1.smarty import SmartyDecryptionError, SmartyFramer, decrypt_frame
from edge.p1.telegram import CrcMismatch, MalformedTelegram, Telegram, parse_telegram

logger = logging.getLogger(__name__)

P1_BAUDRATE = 115200
_READ_SIZE = 4096
_LOGGED_BYTES = 80
_CLOSED = object()
# The registers that only count up, checked in telegrams that have no CRC.
_CUMULATIVE = ("1-0:1.8.1", "1-0:1.8.2", "1-0:2.8.1", "1-0:2.8.2")


class P1PortError(Unavailable, OSError):
    """The P1 port could not be opened or stopped delivering data (an OSError too, as the
    serial port's own errors are, so one ``except OSError`` reopens the port for both)."""


@dataclass(frozen=True, slots=True)
class P1Stats:
    """Counters of one reader, for status reports and tests."""

    bytes_read: int
    telegrams_ok: int
    crc_errors: int
    malformed: int
    mapping_errors: int
    truncated: int
    oversize: int
    dropped_bytes: int
    overflow_chunks: int


class P1Reader:
    """An asyncio reader of one P1 port; use as ``async with`` and iterate ``readings()`` or ``telegrams()``."""

    def __init__(
        self,
        *,
        port: str | serial.SerialBase,
        config: SmartMeterAdapterConfig | None = None,
        max_telegram_size: int = DEFAULT_MAX_SIZE,
        poll_interval: float = 0.05,
        max_queued_chunks: int = 1024,
        smarty_key: bytes | None = None,
        smarty_authentication_key: bytes | None = None,
        on_telegram: Callable[[Telegram], object] | None = None,
    ) -> None:
        self._port = port
        # A Luxembourg Smarty meter encrypts each telegram (edge/p1/smarty.py).
        self._smarty = SmartyFramer() if smarty_key is not None else None
        self._smarty_keys = (smarty_key, smarty_authentication_key)
        # DSMR 2.2/3.0 telegrams carry no CRC: their cumulative registers must not go back.
        self._last_registers: dict[str, Decimal] = {}
        # Sees every good telegram before it is mapped (the power failure log becomes events).
        self._on_telegram = on_telegram
        self.name = port if isinstance(port, str) else (port.port or type(port).__module__)
        self._mapper = P1Mapper(config) if config is not None else None
        self._framer = TelegramFramer(max_size=max_telegram_size)
        self._poll_interval = poll_interval
        self._queue: asyncio.Queue[object] = asyncio.Queue(maxsize=max_queued_chunks)
        self._serial: serial.SerialBase | None = None
        self._owns_serial = False
        self._fd: int | None = None
        self._poller: asyncio.Task[None] | None = None
        self._bytes_read = 0
        self._ok = self._crc = self._malformed = self._mapping = self._overflow = 0
        # Why the last telegram was refused (CRC, content, cut short, too long), for the status.
        self.last_problem: str | None = None

    @property
    def errors(self) -> dict[str, int]:
        """Telegrams and bytes refused so far, by reason (only the non-zero counts)."""
        s = self.stats
        counts = {"crc": s.crc_errors, "malformed": s.malformed, "notMapped": s.mapping_errors,
                  "truncated": s.truncated, "oversize": s.oversize, "droppedBytes": s.dropped_bytes,
                  "overflowChunks": s.overflow_chunks}
        return {name: n for name, n in counts.items() if n}

    @property
    def stats(self) -> P1Stats:
        f = self._framer.stats
        return P1Stats(bytes_read=self._bytes_read, telegrams_ok=self._ok, crc_errors=self._crc,
                       malformed=self._malformed, mapping_errors=self._mapping, truncated=f.truncated,
                       oversize=f.oversize, dropped_bytes=f.dropped_bytes, overflow_chunks=self._overflow)

    async def __aenter__(self) -> P1Reader:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def open(self) -> None:
        """Open the port (115200 8N1) and start receiving into the reader's queue."""
        if self._serial is not None:
            return
        if isinstance(self._port, str):
            try:
                self._serial = serial.serial_for_url(self._port, baudrate=P1_BAUDRATE, bytesize=serial.EIGHTBITS,
                                                     parity=serial.PARITY_NONE, stopbits=serial.STOPBITS_ONE,
                                                     timeout=0)
            except (serial.SerialException, ValueError) as exc:
                raise P1PortError(f"cannot open P1 port {self._port}: {exc}") from exc
            self._owns_serial = True
        else:
            self._serial = self._port
        loop = asyncio.get_running_loop()
        self._fd = _fileno(self._serial)
        if self._fd is not None:
            loop.add_reader(self._fd, self._on_readable)
        else:
            self._poller = asyncio.create_task(self._poll(), name=f"p1-poll {self.name}")
        logger.info("P1 %s: open (%s)", self.name, "fd watch" if self._fd is not None else "polling")

    async def close(self) -> None:
        """Stop receiving, close the port if this reader opened it, and end any running iteration."""
        if self._serial is None:
            return
        if self._fd is not None:
            asyncio.get_running_loop().remove_reader(self._fd)
            self._fd = None
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None
        if self._owns_serial:
            self._serial.close()
        self._serial = None
        self._put(_CLOSED, force=True)

    def _on_readable(self) -> None:
        assert self._fd is not None
        try:
            data = os.read(self._fd, _READ_SIZE)
        except BlockingIOError:
            return
        except OSError as exc:
            self._fail(exc)
            return
        if not data:
            self._fail(EOFError("end of file on the P1 port"))
            return
        self._received(data)

    async def _poll(self) -> None:
        assert self._serial is not None
        ser = self._serial
        while True:
            try:
                waiting = ser.in_waiting
                data = ser.read(waiting) if waiting else b""
            except (serial.SerialException, OSError) as exc:
                self._fail(exc)
                return
            if data:
                self._received(data)
            else:
                await asyncio.sleep(self._poll_interval)

    def _received(self, data: bytes) -> None:
        self._bytes_read += len(data)
        self._put(data)

    def _fail(self, exc: BaseException) -> None:
        if self._fd is not None:
            asyncio.get_running_loop().remove_reader(self._fd)
            self._fd = None
        logger.warning("P1 %s: port failed: %s", self.name, exc)
        self._put(exc, force=True)

    def _put(self, item: object, *, force: bool = False) -> None:
        if self._queue.full():
            if not force:
                # Nobody is consuming: drop the newest bytes; the framer resyncs on the next '/'.
                self._overflow += 1
                return
            self._queue.get_nowait()
            self._overflow += 1
        self._queue.put_nowait(item)

    async def telegrams(self) -> AsyncIterator[Telegram]:
        """Parsed, CRC-checked telegrams as they arrive; bad ones are counted and skipped."""
        while True:
            item = await self._queue.get()
            if item is _CLOSED:
                return
            if isinstance(item, BaseException):
                raise P1PortError(f"P1 port {self.name} failed: {item}") from item
            assert isinstance(item, bytes)
            before = (self._framer.stats.truncated, self._framer.stats.oversize)
            frames = self._framer.feed(item) if self._smarty is None else self._smarty.feed(item)
            if self._framer.stats.truncated > before[0]:
                self.last_problem = "telegram cut short (bytes lost on the line)"
            elif self._framer.stats.oversize > before[1]:
                self.last_problem = "telegram longer than the maximum size"
            for frame in frames:
                telegram = self._parse(frame)
                if telegram is not None:
                    yield telegram

    def _parse(self, frame: bytes) -> Telegram | None:
        try:
            if self._smarty is not None:
                key, authentication_key = self._smarty_keys
                assert key is not None
                frame = decrypt_frame(frame, key=key, authentication_key=authentication_key)
            telegram = parse_telegram(frame)
            if telegram.crc is None:
                self._check_plausible(telegram)
        except CrcMismatch as exc:
            self._crc += 1
            self.last_problem = str(exc)
            logger.warning("P1 %s: telegram skipped, %s: %r", self.name, exc, frame[:_LOGGED_BYTES])
            return None
        except (MalformedTelegram, SmartyDecryptionError) as exc:
            self._malformed += 1
            self.last_problem = str(exc)
            logger.warning("P1 %s: telegram skipped, %s: %r", self.name, exc, frame[:_LOGGED_BYTES])
            return None
        self._ok += 1
        return telegram

    def _check_plausible(self, telegram: Telegram) -> None:
        """A telegram without CRC is refused when a cumulative register went back (a damaged digit)."""
        seen = {code: q.value for code in _CUMULATIVE if (q := telegram.quantity(code)) is not None}
        for code, value in seen.items():
            last = self._last_registers.get(code)
            if last is not None and value < last:
                raise MalformedTelegram(f"{code} went back from {last} to {value} in a telegram without CRC")
        self._last_registers.update(seen)

    async def readings(self) -> AsyncIterator[MeterReading]:
        """OMDP MeterReadings of the configured meter and sub-meters, one telegram at a time."""
        if self._mapper is None:
            raise ValueError("P1Reader needs an adapter config to produce MeterReadings")
        async for telegram in self.telegrams():
            if self._on_telegram is not None:
                self._on_telegram(telegram)
            try:
                readings = self._mapper.readings(telegram, received_at=datetime.now(UTC))
            except ValueError as exc:  # MappingError, or a value the OMDP schema refuses
                self._mapping += 1
                self.last_problem = f"not mapped: {exc}"[:200]
                logger.warning("P1 %s: telegram not mapped, %s (header %r)", self.name, exc, telegram.header)
                continue
            for reading in readings:
                yield reading


def _fileno(ser: serial.SerialBase) -> int | None:
    try:
        return ser.fileno()
    except (AttributeError, io.UnsupportedOperation, serial.SerialException):
        return None


async def read_p1(*, port: str | serial.SerialBase, config: SmartMeterAdapterConfig,
                  max_telegram_size: int = DEFAULT_MAX_SIZE) -> AsyncIterator[MeterReading]:
    """MeterReadings from a P1 port until it fails (P1PortError) or the caller stops iterating."""
    async with P1Reader(port=port, config=config, max_telegram_size=max_telegram_size) as reader:
        async for reading in reader.readings():
            yield reading
