"""DSMR P1 telegrams (2.2 to 5.0, e-MUCS, Smarty): CRC, parsing into typed values, and building.

A telegram is ``/`` + header line, an empty line, COSEM data lines, then ``!`` + four hex
digits of CRC-16/ARC + CRLF. The CRC covers every byte from ``/`` through ``!`` inclusive.
DSMR 2.2 and 3.0 have no CRC (``!`` + CRLF) and no version line: such a telegram is accepted
without one only when it has no version line (a 4.x/5.0 or e-MUCS telegram without its CRC is
refused), and then only if every line parses (docs/P1.md says what else guards it).
Everything here is pure: bytes in, values out (or the reverse), no I/O.

Timestamps carry a season flag: ``S`` is summer time (CEST, UTC+2), ``W`` winter time
(CET, UTC+1). Parsed timestamps are aware datetimes with that fixed offset, so the hour
that repeats when the clocks go back stays unambiguous. DSMR 2.2/3.0 write no flag: their
local time is read with the EU rule (the repeated hour is taken as summer time).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

from broker.errors import Invalid

SUMMER = timezone(timedelta(hours=2), "CEST")
WINTER = timezone(timedelta(hours=1), "CET")

OBIS_VERSION = "1-3:0.2.8"
OBIS_TIMESTAMP = "0-0:1.0.0"
OBIS_EQUIPMENT_ID = "0-0:96.1.1"
OBIS_TARIFF = "0-0:96.14.0"
OBIS_FAILURE_LOG = "1-0:99.97.0"

_LINE_RE = re.compile(r"^(?P<obis>\d{1,3}-\d{1,3}:\d{1,3}\.\d{1,3}\.\d{1,3})(?P<values>(?:\([^()]*\))+)$")
_VALUE_RE = re.compile(r"\(([^()]*)\)")
_NUMBER_RE = re.compile(r"^-?\d+(?:\.\d+)?$")
_TIMESTAMP_RE = re.compile(r"^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})([SW]?)$")
# An M-Bus device's value: 24.2.1 (DSMR 4/5), 24.2.3 (e-MUCS gas), 24.3.0 (DSMR 2.2/3.0).
_MBUS_VALUE_RE = re.compile(r"^0-([1-4]):24\.(?:2\.[13]|3\.0)$")
# Lines that say which DSMR a telegram is (4.0 and later; e-MUCS): such a telegram has a CRC.
OBIS_BELGIAN_VERSION = "0-0:96.1.4"
_HEX4 = re.compile(rb"^[0-9A-Fa-f]{4}$")


class TelegramError(Invalid):
    """A P1 telegram that cannot be used."""


class CrcMismatch(TelegramError):
    """The CRC in the telegram does not match its content (a transmission error)."""


class MalformedTelegram(TelegramError):
    """A telegram whose framing or content does not follow DSMR 5."""


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


# Byte-at-a-time table: about eight times faster than bit-by-bit in pure Python.
_CRC_TABLE = _crc_table()


def crc16_arc(data: bytes, crc: int = 0) -> int:
    """CRC-16/ARC (reflected poly 0xA001, init 0), the checksum DSMR 5 puts after ``!``."""
    table = _CRC_TABLE
    for byte in data:
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc


@dataclass(frozen=True, slots=True)
class Quantity:
    """A numeric COSEM value with its unit as the meter wrote it (None for plain counts)."""

    value: Decimal
    unit: str | None


@dataclass(frozen=True, slots=True)
class MbusReading:
    """A value of an M-Bus device (gas, water) with the time the device measured it."""

    channel: int
    timestamp: datetime
    quantity: Quantity


@dataclass(frozen=True, slots=True)
class PowerFailure:
    """One entry of the long power failure log: when it ended and how long it lasted."""

    ended: datetime
    duration: timedelta


@dataclass(frozen=True, slots=True)
class Telegram:
    """A parsed, CRC-checked P1 telegram.

    ``objects`` keeps every COSEM line's raw values by OBIS code, so a mapping can publish
    codes this module has no typed accessor for.
    """

    header: str
    objects: dict[str, tuple[str, ...]]
    crc: int | None  # None: a DSMR 2.2/3.0 telegram, which has none
    timestamp: datetime | None = None
    mbus: dict[int, MbusReading] = field(default_factory=dict)
    power_failures: tuple[PowerFailure, ...] = ()

    @property
    def version(self) -> str | None:
        return self.text(OBIS_VERSION) or self.text(OBIS_BELGIAN_VERSION)

    def mbus_type(self, channel: int) -> int | None:
        """The M-Bus device type on ``channel`` (EN 13757-3: 3 gas, 4 heat, 7 water), if given."""
        raw = self.text(f"0-{channel}:24.1.0")
        return int(raw) if raw is not None and raw.isdigit() else None

    @property
    def equipment_id(self) -> str | None:
        """The meter's equipment id, decoded from the hex the meter sends."""
        return decode_hex_text(self.text(OBIS_EQUIPMENT_ID))

    @property
    def tariff(self) -> int | None:
        raw = self.text(OBIS_TARIFF)
        return int(raw) if raw is not None and raw.isdigit() else None

    def text(self, obis: str) -> str | None:
        """The raw first value of ``obis``, or None if the telegram has no such line."""
        values = self.objects.get(obis)
        return values[0] if values else None

    def quantity(self, obis: str) -> Quantity | None:
        """The numeric value of a single-value line (``value*unit`` or a plain count), else None."""
        values = self.objects.get(obis)
        if not values or len(values) != 1:
            return None
        return _parse_quantity(values[0])


def parse_timestamp(raw: str) -> datetime:
    """Parse ``YYMMDDhhmmssX`` (X = S or W; none in DSMR 2.2/3.0) into an aware datetime."""
    m = _TIMESTAMP_RE.match(raw)
    if m is None:
        raise MalformedTelegram(f"bad timestamp {raw[:40]!r}")
    yy, mo, dd, hh, mi, ss = (int(g) for g in m.groups()[:6])
    try:
        if m.group(7):
            return datetime(2000 + yy, mo, dd, hh, mi, ss, tzinfo=SUMMER if m.group(7) == "S" else WINTER)
        summer = datetime(2000 + yy, mo, dd, hh, mi, ss, tzinfo=SUMMER)
        return summer if is_eu_summer_time(summer) else summer.replace(tzinfo=WINTER)
    except ValueError as exc:
        raise MalformedTelegram(f"bad timestamp {raw!r}: {exc}") from exc


def format_timestamp(moment: datetime) -> str:
    """Format an aware datetime as the meter would: Dutch local time with its S/W flag."""
    if moment.tzinfo is None:
        raise ValueError("timestamp must be timezone-aware")
    summer = is_eu_summer_time(moment)
    local = moment.astimezone(SUMMER if summer else WINTER)
    return local.strftime("%y%m%d%H%M%S") + ("S" if summer else "W")


def is_eu_summer_time(moment: datetime) -> bool:
    """Whether EU summer time is in force: last Sunday of March to last Sunday of October, 01:00 UTC.

    Computed rather than looked up so an appliance without tzdata formats timestamps correctly.
    """
    utc = moment.astimezone(UTC)
    start = _last_sunday(utc.year, 3)
    end = _last_sunday(utc.year, 10)
    return start <= utc < end


def _last_sunday(year: int, month: int) -> datetime:
    last_day = datetime(year, month + 1, 1, 1, tzinfo=UTC) - timedelta(days=1)
    return last_day - timedelta(days=(last_day.weekday() + 1) % 7)


def _parse_quantity(raw: str) -> Quantity | None:
    number, _, unit = raw.partition("*")
    if not _NUMBER_RE.match(number):
        return None
    return Quantity(Decimal(number), unit or None)


def decode_hex_text(raw: str | None) -> str | None:
    """Decode a hex-encoded DSMR text (ids, messages); text that is not hex comes back as it is."""
    if raw is None:
        return None
    try:
        return bytes.fromhex(raw).decode("ascii")
    except (ValueError, UnicodeDecodeError):
        # Some meters send the id as plain text rather than hex.
        return raw


def verify_crc(data: bytes) -> tuple[int, int]:
    """Check the framing and CRC of one telegram; return (end of the ``!``, crc).

    Raises MalformedTelegram for bad framing and CrcMismatch for a wrong checksum.
    """
    if not data.startswith(b"/"):
        raise MalformedTelegram("telegram does not start with '/'")
    bang = data.rfind(b"!")
    if bang < 0:
        raise MalformedTelegram("telegram has no '!' end marker")
    crc_text = data[bang + 1 : bang + 5]
    if not _HEX4.match(crc_text):
        raise MalformedTelegram(f"telegram end {data[bang:bang + 7]!r} has no 4-digit hex CRC")
    given = int(crc_text, 16)
    computed = crc16_arc(data[: bang + 1])
    if given != computed:
        raise CrcMismatch(f"CRC {given:04X} in telegram, {computed:04X} computed")
    return bang + 1, given


def parse_telegram(data: bytes, *, check_crc: bool = True) -> Telegram:
    """Parse one complete telegram (``/`` through ``!CRC``, CRLF optional) into a Telegram.

    A telegram ending in ``!`` with no CRC (DSMR 2.2/3.0) has ``crc`` None; one that has a
    version line (DSMR 4.0 and later, e-MUCS) must have its CRC.
    """
    bang = data.rfind(b"!")
    if check_crc and bang > 0 and data[bang + 1:].strip() == b"":
        telegram = parse_telegram(data, check_crc=False)
        if OBIS_VERSION in telegram.objects or OBIS_BELGIAN_VERSION in telegram.objects:
            raise MalformedTelegram("telegram end '!' has no 4-digit hex CRC, and its version needs one")
        return telegram
    if check_crc:
        end, crc = verify_crc(data)
    else:
        if not data.startswith(b"/") or b"!" not in data:
            raise MalformedTelegram("telegram is not framed by '/' and '!'")
        end = data.rfind(b"!") + 1
        crc = int(data[end : end + 4], 16) if _HEX4.match(data[end : end + 4]) else None
    try:
        text = data[: end - 1].decode("ascii")
    except UnicodeDecodeError as exc:
        raise MalformedTelegram(f"telegram is not ASCII at byte {exc.start}") from exc
    lines = text.splitlines()
    header = lines[0][1:]
    if not header:
        raise MalformedTelegram("telegram header line is empty")
    objects: dict[str, tuple[str, ...]] = {}
    last: str | None = None
    for number, line in enumerate(lines[1:], start=2):
        if not line:
            continue
        if line.startswith("(") and last is not None:
            # A value on a line of its own continues the object before it (DSMR 2.2/3.0 gas).
            more = tuple(_VALUE_RE.findall(line))
            if "".join(f"({v})" for v in more) != line:
                raise MalformedTelegram(f"line {number} is not a COSEM value: {line[:60]!r}")
            objects[last] += more
            continue
        m = _LINE_RE.match(line)
        if m is None:
            raise MalformedTelegram(f"line {number} is not a COSEM object: {line[:60]!r}")
        last = m.group("obis")
        objects[last] = tuple(_VALUE_RE.findall(m.group("values")))
    for obis, values in objects.items():
        # A unit marks a register: its number must parse, or the value would be silently lost.
        if len(values) == 1 and "*" in values[0] and _parse_quantity(values[0]) is None:
            raise MalformedTelegram(f"{obis} has a bad number {values[0][:40]!r}")
    timestamp = parse_timestamp(objects[OBIS_TIMESTAMP][0]) if OBIS_TIMESTAMP in objects else None
    return Telegram(
        header=header,
        objects=objects,
        crc=crc,
        timestamp=timestamp,
        mbus=_mbus_readings(objects),
        power_failures=_power_failures(objects.get(OBIS_FAILURE_LOG)),
    )


def _mbus_readings(objects: dict[str, tuple[str, ...]]) -> dict[int, MbusReading]:
    readings: dict[int, MbusReading] = {}
    for obis, values in objects.items():
        m = _MBUS_VALUE_RE.match(obis)
        if m is None:
            continue
        if obis.endswith("24.3.0"):
            # DSMR 2.2/3.0: (time)(status)(period)(count)(obis)(unit) then the value.
            if len(values) != 7:
                raise MalformedTelegram(f"{obis} needs seven values, has {len(values)}")
            values = (values[0], f"{values[6]}*{values[5]}")
        elif len(values) != 2:
            raise MalformedTelegram(f"{obis} needs a timestamp and a value, has {len(values)} values")
        quantity = _parse_quantity(values[1])
        if quantity is None:
            raise MalformedTelegram(f"{obis} has a bad value {values[1][:40]!r}")
        channel = int(m.group(1))
        readings[channel] = MbusReading(channel, parse_timestamp(values[0]), quantity)
    return readings


def _power_failures(values: tuple[str, ...] | None) -> tuple[PowerFailure, ...]:
    """Parse the long power failure log; an empty or odd log gives no entries, never an error."""
    if not values or not values[0].isdigit():
        return ()
    count = int(values[0])
    # values: count, the OBIS of the log's value, then (end time, duration) pairs.
    pairs = values[2:]
    if len(pairs) != 2 * count:
        return ()
    failures = []
    for i in range(count):
        duration = _parse_quantity(pairs[2 * i + 1])
        if duration is None:
            return ()
        try:
            ended = parse_timestamp(pairs[2 * i])
        except MalformedTelegram:
            return ()
        failures.append(PowerFailure(ended, timedelta(seconds=int(duration.value))))
    return tuple(failures)


# --- building -------------------------------------------------------------------------------


def frame_telegram(header: str, lines: Iterable[str], *, corrupt_crc: bool = False) -> bytes:
    """Frame data lines as a telegram with its CRC; ``corrupt_crc`` writes a wrong one on purpose."""
    if "/" in header or "!" in header or "\n" in header:
        raise ValueError(f"header {header!r} may not contain '/', '!' or a line break")
    body = ("/" + header + "\r\n\r\n" + "".join(line + "\r\n" for line in lines) + "!").encode("ascii")
    crc = crc16_arc(body)
    if corrupt_crc:
        crc ^= 0x5A5A
    return body + f"{crc:04X}\r\n".encode("ascii")


@dataclass(frozen=True, slots=True, kw_only=True)
class GasValue:
    """What an M-Bus gas meter reports on one channel, for building a telegram."""

    channel: int = 1
    equipment_id: str = "G0000000000000001"
    timestamp: datetime
    m3: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class P1Values:
    """The values of one DSMR 5 telegram, for building it (simulator, tests, benchmarks)."""

    timestamp: datetime
    header: str = "GWS5\\2GRIDWIRE-SIM"
    equipment_id: str = "E0000000000000001"
    delivered_t1: Decimal = Decimal("0")
    delivered_t2: Decimal = Decimal("0")
    returned_t1: Decimal = Decimal("0")
    returned_t2: Decimal = Decimal("0")
    tariff: int = 2
    power_delivered: Decimal = Decimal("0")
    power_returned: Decimal = Decimal("0")
    voltages: tuple[Decimal, Decimal, Decimal] = (Decimal("230.0"),) * 3
    currents: tuple[int, int, int] = (0, 0, 0)
    power_failures: int = 0
    long_power_failures: int = 0
    failure_log: Sequence[PowerFailure] = ()
    gas: Sequence[GasValue] = ()


def _fixed(value: Decimal, int_digits: int, places: int) -> str:
    text = f"{value:0{int_digits + places + 1}.{places}f}"
    if len(text) != int_digits + places + 1:
        raise ValueError(f"{value} does not fit F{int_digits + places}({places},{places})")
    return text


def telegram_lines(v: P1Values) -> list[str]:
    """The COSEM lines of a DSMR 5 telegram for ``v``, in the order real meters send them."""
    lines = [
        f"{OBIS_VERSION}(50)",
        f"{OBIS_TIMESTAMP}({format_timestamp(v.timestamp)})",
        f"{OBIS_EQUIPMENT_ID}({v.equipment_id.encode('ascii').hex().upper()})",
        f"1-0:1.8.1({_fixed(v.delivered_t1, 6, 3)}*kWh)",
        f"1-0:1.8.2({_fixed(v.delivered_t2, 6, 3)}*kWh)",
        f"1-0:2.8.1({_fixed(v.returned_t1, 6, 3)}*kWh)",
        f"1-0:2.8.2({_fixed(v.returned_t2, 6, 3)}*kWh)",
        f"{OBIS_TARIFF}({v.tariff:04d})",
        f"1-0:1.7.0({_fixed(v.power_delivered, 2, 3)}*kW)",
        f"1-0:2.7.0({_fixed(v.power_returned, 2, 3)}*kW)",
        f"0-0:96.7.21({v.power_failures:05d})",
        f"0-0:96.7.9({v.long_power_failures:05d})",
    ]
    log = "".join(
        f"({format_timestamp(f.ended)})({int(f.duration.total_seconds()):010d}*s)" for f in v.failure_log
    )
    lines.append(f"{OBIS_FAILURE_LOG}({len(v.failure_log)})(0-0:96.7.19){log}")
    lines += [f"1-0:{c}.32.0(00000)" for c in (32, 52, 72)]
    lines += [f"1-0:{c}.7.0({_fixed(u, 3, 1)}*V)" for c, u in zip((32, 52, 72), v.voltages, strict=True)]
    lines += [f"1-0:{c}.7.0({i:03d}*A)" for c, i in zip((31, 51, 71), v.currents, strict=True)]
    # The whole load on L1: enough for a mapping to find every per-phase power code.
    zero = Decimal(0)
    for codes, total in (((21, 41, 61), v.power_delivered), ((22, 42, 62), v.power_returned)):
        lines += [f"1-0:{c}.7.0({_fixed(p, 2, 3)}*kW)" for c, p in zip(codes, (total, zero, zero), strict=True)]
    for gas in v.gas:
        ch = gas.channel
        lines += [
            f"0-{ch}:24.1.0(003)",
            f"0-{ch}:96.1.0({gas.equipment_id.encode('ascii').hex().upper()})",
            f"0-{ch}:24.2.1({format_timestamp(gas.timestamp)})({_fixed(gas.m3, 5, 3)}*m3)",
        ]
    return lines


def build_telegram(values: P1Values, *, corrupt_crc: bool = False) -> bytes:
    """A complete DSMR 5 telegram, as bytes on the wire, for the given values."""
    return frame_telegram(values.header, telegram_lines(values), corrupt_crc=corrupt_crc)
