"""Names for the DSMR/SMR alarm register bits and standard event codes, and their decoding (pure).

The alarm register (0.0.97.98.0.255) is a 32-bit field, one bit per alarm; the standard
event log (0.0.99.98.0.255) holds (clock, event code) captures. Bits and codes not named
here decode to ``BIT_<n>`` / ``EVENT_<n>`` so an unknown alarm is never dropped.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

ALARM_REGISTER_OBIS = "0.0.97.98.0.255"
STANDARD_EVENT_LOG_OBIS = "0.0.99.98.0.255"
STANDARD_EVENT_CODE_OBIS = "0.0.96.11.0.255"

ALARM_BITS: dict[int, str] = {
    0: "CLOCK_INVALID",
    1: "REPLACE_BATTERY",
    2: "POWER_UP",
    8: "PROGRAM_MEMORY_ERROR",
    9: "RAM_ERROR",
    10: "NV_MEMORY_ERROR",
    11: "MEASUREMENT_SYSTEM_ERROR",
    12: "WATCHDOG_ERROR",
    13: "FRAUD_ATTEMPT",
    **{16 + i: f"COMMUNICATION_ERROR_M_BUS_CHANNEL_{i + 1}" for i in range(4)},
    **{20 + i: f"FRAUD_ATTEMPT_M_BUS_CHANNEL_{i + 1}" for i in range(4)},
    **{24 + i: f"NEW_M_BUS_DEVICE_DISCOVERED_CHANNEL_{i + 1}" for i in range(4)},
}

EVENT_CODES: dict[int, str] = {
    1: "POWER_FAILURE",
    2: "POWER_RETURNED",
    3: "CLOCK_ADJUSTED_OLD_TIME",
    4: "CLOCK_ADJUSTED_NEW_TIME",
    5: "CLOCK_INVALID",
    6: "REPLACE_BATTERY",
    7: "BATTERY_VOLTAGE_LOW",
    8: "TARIFF_ACTIVATED",
    9: "ERROR_REGISTER_CLEARED",
    10: "ALARM_REGISTER_CLEARED",
    11: "HARDWARE_ERROR_PROGRAM_MEMORY",
    12: "HARDWARE_ERROR_RAM",
    13: "HARDWARE_ERROR_NV_MEMORY",
    14: "WATCHDOG_ERROR",
    15: "HARDWARE_ERROR_MEASUREMENT_SYSTEM",
    16: "FIRMWARE_READY_FOR_ACTIVATION",
    17: "FIRMWARE_ACTIVATED",
    # Fraud detection log (DSMR 5 P3).
    40: "TERMINAL_COVER_REMOVED",
    41: "TERMINAL_COVER_CLOSED",
    42: "STRONG_DC_FIELD_DETECTED",
    43: "NO_STRONG_DC_FIELD_ANYMORE",
    44: "METER_COVER_REMOVED",
    45: "METER_COVER_CLOSED",
    46: "ASSOCIATION_AUTHENTICATION_FAILURE",
    # Disconnector control log.
    60: "MANUAL_DISCONNECTION",
    61: "MANUAL_RECONNECTION",
    62: "REMOTE_DISCONNECTION",
    63: "REMOTE_RECONNECTION",
    64: "LOCAL_DISCONNECTION",
}

_NAME_TO_BIT = {name: bit for bit, name in ALARM_BITS.items()}


def alarm_bit(name: str) -> int:
    """The bit number of a named alarm (KeyError if unknown)."""
    return _NAME_TO_BIT[name]


def decode_alarms(value: int) -> list[dict[str, Any]]:
    """The set bits of an alarm register value, lowest first, each with its name."""
    if not 0 <= value < 1 << 32:
        raise ValueError(f"alarm register value out of uint32 range: {value}")
    return [{"bit": bit, "name": ALARM_BITS.get(bit, f"BIT_{bit}")} for bit in range(32) if value >> bit & 1]


def event_name(code: int) -> str:
    return EVENT_CODES.get(code, f"EVENT_{code}")


def decode_events(entries: list[tuple[datetime, int]]) -> list[dict[str, Any]]:
    """Event log entries as {time, code, name}, oldest first."""
    return [{"time": at.isoformat(), "code": code, "name": event_name(code)} for at, code in sorted(entries)]
