"""P1 telegrams of every DSMR version the simulator speaks: 2.2, 3.0, 4.0, 4.2, 5.0, the Belgian
e-MUCS (Fluvius) and the Luxembourg Smarty, with gas, water and heat M-Bus sub-meters.

What differs between them (the reader parses all; ``edge/p1/telegram.py``):

| version | version line | CRC | timestamp line | energy | M-Bus value |
|---|---|---|---|---|---|
| 2.2, 3.0 | none | none | none (the reader's clock) | 5.3 digits, kWh | ``0-n:24.3.0(time)(..)(60)(1)(0-n:24.2.1)(m3)`` with the value on the next line, time without S/W |
| 4.0, 4.2 | ``1-3:0.2.8(40)`` / ``(42)`` | CRC-16 | ``0-0:1.0.0`` with S/W | 6.3 digits | ``0-n:24.2.1(time)(value*unit)`` |
| 5.0 | ``1-3:0.2.8(50)`` | CRC-16 | as 4.x | as 4.x, and voltages | as 4.x |
| e-MUCS | ``0-0:96.1.4(50217)`` | CRC-16 | as 4.x | as 4.x, plus demand (1.4.0, 1.6.0) | gas ``24.2.3``, water ``24.2.1`` |
| Smarty | ``1-3:0.2.8(42)`` | CRC-16, inside an AES-GCM frame | as 4.x | totals 1.8.0/2.8.0, reactive 3.8.0/4.8.0 | as 4.x |

M-Bus device types (EN 13757-3): 3 gas (m3), 4 heat (GJ), 7 water (m3).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from edge.p1.telegram import (
    OBIS_EQUIPMENT_ID,
    OBIS_FAILURE_LOG,
    OBIS_TIMESTAMP,
    OBIS_VERSION,
    P1Values,
    _fixed,
    format_timestamp,
    frame_telegram,
    telegram_lines,
)

VERSIONS = ("2.2", "3.0", "4.0", "4.2", "5.0", "e-mucs", "smarty")
GAS, HEAT, WATER = 3, 4, 7
UNITS = {GAS: "m3", HEAT: "GJ", WATER: "m3"}
HEADERS = {"2.2": "ISk5\\2MT382-1004", "3.0": "KMP5 KA6U001585654321", "4.0": "KFM5KAIFA-METER",
           "4.2": "ISk5\\2MT382-1000", "5.0": "GWS5\\2GRIDWIRE-SIM", "e-mucs": "FLU5\\253769484_A",
           "smarty": "Lux5\\u2MT382-1000"}


@dataclass(frozen=True, slots=True, kw_only=True)
class MbusDevice:
    """A gas, water or heat meter on an M-Bus channel, for building a telegram."""

    channel: int
    device_type: int = GAS
    equipment_id: str = "G0000000000000001"
    timestamp: datetime
    value: Decimal

    @property
    def unit(self) -> str:
        return UNITS[self.device_type]


def devices_of(values: P1Values) -> list[MbusDevice]:
    """The gas meters a P1Values carries, as M-Bus devices."""
    return [MbusDevice(channel=g.channel, equipment_id=g.equipment_id, timestamp=g.timestamp, value=g.m3)
            for g in values.gas]


def _hex(text: str) -> str:
    return text.encode("ascii").hex().upper()


def _local(moment: datetime) -> str:
    """DSMR 2.2/3.0 time: the local time, with no S/W flag."""
    return format_timestamp(moment)[:12]


def _old_lines(v: P1Values, devices: Sequence[MbusDevice], version: str) -> list[str]:
    equipment = v.equipment_id if version == "2.2" else _hex(v.equipment_id)
    lines = [
        f"{OBIS_EQUIPMENT_ID}({equipment})",
        f"1-0:1.8.1({_fixed(v.delivered_t1, 5, 3)}*kWh)",
        f"1-0:1.8.2({_fixed(v.delivered_t2, 5, 3)}*kWh)",
        f"1-0:2.8.1({_fixed(v.returned_t1, 5, 3)}*kWh)",
        f"1-0:2.8.2({_fixed(v.returned_t2, 5, 3)}*kWh)",
        f"0-0:96.14.0({v.tariff:04d})",
        f"1-0:1.7.0({_fixed(v.power_delivered, 4, 2)}*kW)",
        f"1-0:2.7.0({_fixed(v.power_returned, 4, 2)}*kW)",
        "0-0:17.0.0(0999.00*kW)",
        "0-0:96.3.10(1)",
        "0-0:96.13.1()",
        "0-0:96.13.0()",
    ]
    status = "00" if version == "2.2" else "08"
    for d in devices:
        ch = d.channel
        lines += [f"0-{ch}:24.1.0({d.device_type})", f"0-{ch}:96.1.0({_hex(d.equipment_id)})",
                  f"0-{ch}:24.3.0({_local(d.timestamp)})({status})(60)(1)(0-{ch}:24.2.1)({d.unit})",
                  f"({_fixed(d.value, 5, 3)})", f"0-{ch}:24.4.0(1)"]
    return lines


def _dsmr4_lines(v: P1Values, devices: Sequence[MbusDevice], version: str) -> list[str]:
    lines = [
        f"{OBIS_VERSION}({version.replace('.', '')})",
        f"{OBIS_TIMESTAMP}({format_timestamp(v.timestamp)})",
        f"{OBIS_EQUIPMENT_ID}({_hex(v.equipment_id)})",
        f"1-0:1.8.1({_fixed(v.delivered_t1, 6, 3)}*kWh)",
        f"1-0:1.8.2({_fixed(v.delivered_t2, 6, 3)}*kWh)",
        f"1-0:2.8.1({_fixed(v.returned_t1, 6, 3)}*kWh)",
        f"1-0:2.8.2({_fixed(v.returned_t2, 6, 3)}*kWh)",
        f"0-0:96.14.0({v.tariff:04d})",
        f"1-0:1.7.0({_fixed(v.power_delivered, 2, 3)}*kW)",
        f"1-0:2.7.0({_fixed(v.power_returned, 2, 3)}*kW)",
    ]
    if version == "4.0":
        lines += ["0-0:17.0.0(999.9*kW)", "0-0:96.3.10(1)"]
    lines += [f"0-0:96.7.21({v.power_failures:05d})", f"0-0:96.7.9({v.long_power_failures:05d})",
              f"{OBIS_FAILURE_LOG}(0)(0-0:96.7.19)"]
    lines += [f"1-0:{c}.32.0(00000)" for c in (32, 52, 72)]
    lines += ["0-0:96.13.1()", "0-0:96.13.0()"]
    lines += [f"1-0:{c}.7.0({i:03d}*A)" for c, i in zip((31, 51, 71), v.currents, strict=True)]
    lines += [f"1-0:{c}.7.0({_fixed(v.power_delivered if c == 21 else Decimal(0), 2, 3)}*kW)" for c in (21, 41, 61)]
    lines += [f"1-0:{c}.7.0({_fixed(v.power_returned if c == 22 else Decimal(0), 2, 3)}*kW)" for c in (22, 42, 62)]
    for d in devices:
        ch = d.channel
        lines += [f"0-{ch}:24.1.0({d.device_type:03d})", f"0-{ch}:96.1.0({_hex(d.equipment_id)})",
                  f"0-{ch}:24.2.1({format_timestamp(d.timestamp)})({_fixed(d.value, 5, 3)}*{d.unit})"]
        if version == "4.0" and d.device_type == GAS:
            lines.append(f"0-{ch}:24.4.0(1)")
    return lines


def _emucs_lines(v: P1Values, devices: Sequence[MbusDevice]) -> list[str]:
    stamp = format_timestamp(v.timestamp)
    lines = [
        "0-0:96.1.4(50217)",
        f"{OBIS_EQUIPMENT_ID}({_hex(v.equipment_id)})",
        f"{OBIS_TIMESTAMP}({stamp})",
        f"1-0:1.8.1({_fixed(v.delivered_t1, 6, 3)}*kWh)",
        f"1-0:1.8.2({_fixed(v.delivered_t2, 6, 3)}*kWh)",
        f"1-0:2.8.1({_fixed(v.returned_t1, 6, 3)}*kWh)",
        f"1-0:2.8.2({_fixed(v.returned_t2, 6, 3)}*kWh)",
        f"0-0:96.14.0({v.tariff:04d})",
        f"1-0:1.4.0({_fixed(v.power_delivered, 2, 3)}*kW)",
        f"1-0:1.6.0({stamp})({_fixed(v.power_delivered, 2, 3)}*kW)",
        f"1-0:1.7.0({_fixed(v.power_delivered, 2, 3)}*kW)",
        f"1-0:2.7.0({_fixed(v.power_returned, 2, 3)}*kW)",
    ]
    lines += [f"1-0:{c}.7.0({_fixed(v.power_delivered if c == 21 else Decimal(0), 2, 3)}*kW)" for c in (21, 41, 61)]
    lines += [f"1-0:{c}.7.0({_fixed(v.power_returned if c == 22 else Decimal(0), 2, 3)}*kW)" for c in (22, 42, 62)]
    lines += [f"1-0:{c}.7.0({_fixed(u, 3, 1)}*V)" for c, u in zip((32, 52, 72), v.voltages, strict=True)]
    lines += [f"1-0:{c}.7.0({_fixed(Decimal(i), 3, 2)}*A)" for c, i in zip((31, 51, 71), v.currents, strict=True)]
    lines += ["0-0:96.3.10(1)", "0-0:17.0.0(999.9*kW)", "1-0:31.4.0(999*A)", "0-0:96.13.0()"]
    for d in devices:
        ch = d.channel
        code = "24.2.3" if d.device_type == GAS else "24.2.1"
        lines += [f"0-{ch}:24.1.0({d.device_type:03d})", f"0-{ch}:96.1.1({_hex(d.equipment_id)})"]
        if d.device_type == GAS:
            lines.append(f"0-{ch}:24.4.0(1)")
        lines.append(f"0-{ch}:{code}({format_timestamp(d.timestamp)})({_fixed(d.value, 5, 3)}*{d.unit})")
    return lines


def _smarty_lines(v: P1Values, devices: Sequence[MbusDevice]) -> list[str]:
    lines = [
        f"{OBIS_VERSION}(42)",
        f"{OBIS_TIMESTAMP}({format_timestamp(v.timestamp)})",
        f"0-0:42.0.0({_hex(v.equipment_id)})",
        f"1-0:1.8.0({_fixed(v.delivered_t1 + v.delivered_t2, 6, 3)}*kWh)",
        f"1-0:2.8.0({_fixed(v.returned_t1 + v.returned_t2, 6, 3)}*kWh)",
        "1-0:3.8.0(000000.000*kvarh)",
        "1-0:4.8.0(000000.000*kvarh)",
        f"1-0:1.7.0({_fixed(v.power_delivered, 2, 3)}*kW)",
        f"1-0:2.7.0({_fixed(v.power_returned, 2, 3)}*kW)",
        "1-0:3.7.0(00.000*kvar)",
        "1-0:4.7.0(00.000*kvar)",
        "0-0:17.0.0(999.9*kVA)",
        f"1-0:32.7.0({_fixed(v.voltages[0], 3, 1)}*V)",
        f"1-0:31.7.0({v.currents[0]:03d}*A)",
        "0-0:96.3.10(1)",
        f"0-0:96.7.21({v.power_failures:05d})",
        f"0-0:96.7.9({v.long_power_failures:05d})",
        f"{OBIS_FAILURE_LOG}(0)(0-0:96.7.19)",
        "0-0:96.13.0()",
    ]
    for d in devices:
        ch = d.channel
        lines += [f"0-{ch}:24.1.0({d.device_type:03d})", f"0-{ch}:96.1.0({_hex(d.equipment_id)})",
                  f"0-{ch}:24.2.1({format_timestamp(d.timestamp)})({_fixed(d.value, 5, 3)}*{d.unit})"]
    return lines


def version_lines(values: P1Values, version: str, devices: Sequence[MbusDevice] | None = None) -> list[str]:
    """The COSEM lines of a telegram of ``version`` (VERSIONS); ``devices`` default: the values' gas."""
    subs = devices_of(values) if devices is None else devices
    if version in ("2.2", "3.0"):
        return _old_lines(values, subs, version)
    if version in ("4.0", "4.2"):
        return _dsmr4_lines(values, subs, version)
    if version == "5.0":
        return telegram_lines(values) if devices is None else _replace_devices(telegram_lines(values), subs)
    if version == "e-mucs":
        return _emucs_lines(values, subs)
    if version == "smarty":
        return _smarty_lines(values, subs)
    raise ValueError(f"unknown DSMR version {version!r}; one of {', '.join(VERSIONS)}")


def _replace_devices(lines: list[str], devices: Sequence[MbusDevice]) -> list[str]:
    kept = [line for line in lines if not line.startswith(("0-1:", "0-2:", "0-3:", "0-4:"))]
    for d in devices:
        ch = d.channel
        kept += [f"0-{ch}:24.1.0({d.device_type:03d})", f"0-{ch}:96.1.0({_hex(d.equipment_id)})",
                 f"0-{ch}:24.2.1({format_timestamp(d.timestamp)})({_fixed(d.value, 5, 3)}*{d.unit})"]
    return kept


def build_version_telegram(values: P1Values, version: str, *, devices: Sequence[MbusDevice] | None = None,
                           corrupt_crc: bool = False) -> bytes:
    """A complete telegram of ``version`` as bytes on the wire (Smarty: before encryption)."""
    lines = version_lines(values, version, devices)
    header = HEADERS[version] if values.header == P1Values.__dataclass_fields__["header"].default else values.header
    framed = frame_telegram(header, lines, corrupt_crc=corrupt_crc)
    if version in ("2.2", "3.0"):
        return framed[: framed.rindex(b"!") + 1] + b"\r\n"  # no CRC in these versions
    return framed
