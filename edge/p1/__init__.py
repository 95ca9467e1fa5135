"""The DSMR 5 P1 port adapter: telegram codec, framer, OMDP mapping, asyncio reader, simulator."""

from edge.p1.framer import FramerStats, TelegramFramer
from edge.p1.mapping import MappingError, P1Mapper, telegram_to_readings
from edge.p1.reader import P1PortError, P1Reader, P1Stats, read_p1
from edge.p1.simulator import MeterModel, P1Simulator
from edge.p1.telegram import (
    CrcMismatch,
    GasValue,
    MalformedTelegram,
    MbusReading,
    P1Values,
    PowerFailure,
    Quantity,
    Telegram,
    TelegramError,
    build_telegram,
    crc16_arc,
    parse_telegram,
)

__all__ = [
    "CrcMismatch", "FramerStats", "GasValue", "MalformedTelegram", "MappingError", "MbusReading", "MeterModel", "P1Mapper", "P1PortError", "P1Reader",
    "P1Simulator", "P1Stats", "P1Values", "PowerFailure", "Quantity", "Telegram", "TelegramError",
    "TelegramFramer", "build_telegram", "crc16_arc", "parse_telegram", "read_p1", "telegram_to_readings",
]
