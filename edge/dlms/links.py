"""Byte links for DLMS: frame readers for WRAPPER and HDLC, and an asyncio serial port (pyserial).

The client and the simulator both need to cut a byte stream into whole frames before gurux
parses them; this module does that and nothing else. A serial port is exposed as an
``asyncio.StreamReader`` plus a small writer with the ``StreamWriter`` methods we use, so the
TCP and serial paths share the same code above them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from broker.errors import Invalid

if TYPE_CHECKING:  # pyserial is imported by open_serial: TCP meters never load it (issue 15: RSS)
    import serial

logger = logging.getLogger(__name__)

WRAPPER_HEADER = 8
HDLC_FLAG = 0x7E
# HDLC frame format type 3 (IEC 62056-46): 0xA in the top nibble, segmentation bit, 11-bit length.
_FORMAT_TYPE_MASK = 0xF0
_FORMAT_TYPE_3 = 0xA0
_LENGTH_HIGH_MASK = 0x07
# A frame needs at least format(2) + dest(1) + src(1) + control(1) + HCS/FCS(2).
_MIN_HDLC_LENGTH = 7


class FramingError(Invalid):
    """The bytes on the link are not a frame of the expected kind."""


async def read_wrapper_frame(reader: asyncio.StreamReader) -> bytes:
    """One DLMS WRAPPER frame (8-byte header with the payload length, then the payload)."""
    header = await reader.readexactly(WRAPPER_HEADER)
    length = int.from_bytes(header[6:8], "big")
    return header + await reader.readexactly(length)


async def read_hdlc_frame(reader: asyncio.StreamReader) -> bytes:
    """One HDLC frame including both 0x7E flags; leading noise and repeated flags are skipped."""
    while True:
        first = (await reader.readexactly(1))[0]
        if first != HDLC_FLAG:
            continue  # line noise before a frame (e.g. a meter waking up): resynchronise on a flag
        format_high = (await reader.readexactly(1))[0]
        while format_high == HDLC_FLAG:  # back-to-back flags between frames
            format_high = (await reader.readexactly(1))[0]
        if format_high & _FORMAT_TYPE_MASK != _FORMAT_TYPE_3:
            logger.debug("HDLC: skipping byte 0x%02x, not a frame format", format_high)
            continue
        format_low = (await reader.readexactly(1))[0]
        length = ((format_high & _LENGTH_HIGH_MASK) << 8) | format_low
        if length < _MIN_HDLC_LENGTH:
            raise FramingError(f"HDLC frame length {length} is too short")
        rest = await reader.readexactly(length - 2)
        closing = (await reader.readexactly(1))[0]
        if closing != HDLC_FLAG:
            raise FramingError("HDLC frame does not end with a flag")
        return bytes([HDLC_FLAG, format_high, format_low]) + rest + bytes([HDLC_FLAG])


class SerialWriter:
    """The part of ``asyncio.StreamWriter`` our code uses, over a non-blocking pyserial port."""

    def __init__(self, port: serial.Serial) -> None:
        self._port = port

    def write(self, data: bytes) -> None:
        self._port.write(data)

    async def drain(self) -> None:
        # pyserial's write blocks until the OS took the bytes (write_timeout bounds it).
        return None

    def close(self) -> None:
        if not self._port.is_open:
            return
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self._port.fileno())
        self._port.close()

    async def wait_closed(self) -> None:
        return None


async def open_serial(port: str, *, baudrate: int, write_timeout: float) -> tuple[asyncio.StreamReader, SerialWriter]:
    """Open a serial port (8N1, raw) and return an asyncio reader and writer for it."""
    import serial  # only serial (HDLC) meters and push lines need pyserial, termios with it

    loop = asyncio.get_running_loop()
    device = serial.Serial(port, baudrate=baudrate, bytesize=serial.EIGHTBITS, parity=serial.PARITY_NONE,
                           stopbits=serial.STOPBITS_ONE, timeout=0, write_timeout=write_timeout)
    reader = asyncio.StreamReader()

    def on_readable() -> None:
        try:
            data = device.read(4096)
        except (OSError, serial.SerialException) as exc:
            loop.remove_reader(device.fileno())
            reader.set_exception(ConnectionError(f"serial port {port} failed: {exc!r}"))
            return
        if data:
            reader.feed_data(data)

    loop.add_reader(device.fileno(), on_readable)
    return reader, SerialWriter(device)
