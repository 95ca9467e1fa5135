"""The DSMR 5 P1 port adapter: telegram codec, framer, OMDP mapping, asyncio reader, simulator.

The names below are imported when first used (PEP 562): a concentrator without a P1 meter does
not load the reader or the simulator.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge.lazy import exports

if TYPE_CHECKING:
    from edge.p1.framer import FramerStats, TelegramFramer
    from edge.p1.mapping import MappingError, P1Mapper, telegram_to_readings
    from edge.p1.reader import P1PortError, P1Reader, P1Stats, read_p1
    from edge.p1.simulator import MeterModel, P1Simulator
    from edge.p1.telegram import CrcMismatch, GasValue, MalformedTelegram, MbusReading, P1Values, PowerFailure, Quantity, Telegram, TelegramError, build_telegram, crc16_arc, parse_telegram

# Each name and the module it comes from.
_WHERE = {
    "FramerStats": "edge.p1.framer",
    "TelegramFramer": "edge.p1.framer",
    "MappingError": "edge.p1.mapping",
    "P1Mapper": "edge.p1.mapping",
    "telegram_to_readings": "edge.p1.mapping",
    "P1PortError": "edge.p1.reader",
    "P1Reader": "edge.p1.reader",
    "P1Stats": "edge.p1.reader",
    "read_p1": "edge.p1.reader",
    "MeterModel": "edge.p1.simulator",
    "P1Simulator": "edge.p1.simulator",
    "CrcMismatch": "edge.p1.telegram",
    "GasValue": "edge.p1.telegram",
    "MalformedTelegram": "edge.p1.telegram",
    "MbusReading": "edge.p1.telegram",
    "P1Values": "edge.p1.telegram",
    "PowerFailure": "edge.p1.telegram",
    "Quantity": "edge.p1.telegram",
    "Telegram": "edge.p1.telegram",
    "TelegramError": "edge.p1.telegram",
    "build_telegram": "edge.p1.telegram",
    "crc16_arc": "edge.p1.telegram",
    "parse_telegram": "edge.p1.telegram",
}

__all__ = sorted(_WHERE)


__getattr__ = exports(__name__, globals(), _WHERE)
