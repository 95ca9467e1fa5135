"""Every DSMR version the simulator emits parses, and dsmr-parser (MIT, an independent parser that
is a test tool only) reads the same telegrams to the same values: DSMR 2.2, 3.0, 4.0, 4.2, 5.0, the
Belgian e-MUCS and the Luxembourg Smarty (encrypted), with gas, water and heat sub-meters."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import serial
try:
    from dsmr_parser import telegram_specifications
    from dsmr_parser.parsers import TelegramParser
except ImportError as exc:  # installed by scripts/install.sh, not by the test extra (see there)
    raise ImportError("dsmr-parser is missing: run scripts/install.sh, or "
                      ".venv/bin/pip install --no-deps 'dsmr-parser==1.11.2'") from exc

from devices.adapter_config import parse_adapter_config
from edge.p1.reader import P1Reader
from edge.p1.simulator import MeterModel, P1Simulator
from edge.p1.smarty import SmartyDecryptionError, decrypt_frame, encrypt_telegram
from edge.p1.telegram import MalformedTelegram, P1Values, parse_telegram
from edge.p1.versions import GAS, HEAT, VERSIONS, WATER, MbusDevice, build_version_telegram

SPECS = {"2.2": telegram_specifications.V2_2, "3.0": telegram_specifications.V3, "4.0": telegram_specifications.V4,
         "4.2": telegram_specifications.V4, "5.0": telegram_specifications.V5,
         "e-mucs": telegram_specifications.BELGIUM_FLUVIUS, "smarty": telegram_specifications.LUXEMBOURG_SMARTY}
# dsmr-parser's names for the registers both read.
REGISTERS = {"1-0:1.8.1": "ELECTRICITY_USED_TARIFF_1", "1-0:1.8.2": "ELECTRICITY_USED_TARIFF_2",
             "1-0:2.8.1": "ELECTRICITY_DELIVERED_TARIFF_1", "1-0:2.8.2": "ELECTRICITY_DELIVERED_TARIFF_2",
             "1-0:1.8.0": "ELECTRICITY_IMPORTED_TOTAL", "1-0:2.8.0": "ELECTRICITY_EXPORTED_TOTAL",
             "1-0:1.7.0": "CURRENT_ELECTRICITY_USAGE", "1-0:2.7.0": "CURRENT_ELECTRICITY_DELIVERY"}
KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
AUTH = bytes.fromhex("0f0e0d0c0b0a09080706050403020100")
# A winter and a summer instant: the S/W flag (and its absence in 2.2/3.0) must be read alike.
MOMENTS = (datetime(2026, 1, 15, 7, 30, 10, tzinfo=UTC), datetime(2026, 7, 1, 10, 0, 0, tzinfo=UTC))


def values(at: datetime) -> P1Values:
    return P1Values(timestamp=at, equipment_id="E0043007052870318", delivered_t1=Decimal("1234.567"),
                    delivered_t2=Decimal("2345.678"), returned_t1=Decimal("12.345"), returned_t2=Decimal("23.456"),
                    power_delivered=Decimal("1.23"), power_returned=Decimal("0.05"), currents=(5, 1, 0))


def devices(version: str, at: datetime) -> list[MbusDevice]:
    gas = MbusDevice(channel=1, device_type=GAS, timestamp=at - timedelta(minutes=5), value=Decimal("4321.987"))
    if version in ("2.2", "3.0", "4.0", "4.2"):
        return [gas]  # dsmr-parser reads one M-Bus device in these versions
    return [gas, MbusDevice(channel=2, device_type=WATER, equipment_id="W0000000000000002", timestamp=at,
                            value=Decimal("87.654")),
            MbusDevice(channel=3, device_type=HEAT, equipment_id="H0000000000000003", timestamp=at,
                       value=Decimal("12.5"))]


@pytest.mark.parametrize("at", MOMENTS, ids=["winter", "summer"])
@pytest.mark.parametrize("version", VERSIONS)
def test_each_version_reads_as_dsmr_parser_reads_it(version: str, at: datetime) -> None:
    subs = devices(version, at)
    raw = build_version_telegram(values(at), version, devices=subs)
    ours = parse_telegram(raw)
    theirs = TelegramParser(SPECS[version]).parse(raw.decode("ascii"), throw_ex=True)
    assert (ours.crc is None) == (version in ("2.2", "3.0"))
    compared = 0
    for code, name in REGISTERS.items():
        mine = ours.quantity(code)
        if mine is None:
            assert getattr(theirs, name, None) is None, f"{version}: only dsmr-parser has {code}"
            continue
        other = getattr(theirs, name)
        assert (mine.value, mine.unit) == (other.value, other.unit), f"{version} {code}"
        compared += 1
    assert compared >= 4
    if version not in ("2.2", "3.0"):
        assert ours.timestamp == theirs.P1_MESSAGE_TIMESTAMP.value == at
    for device in subs:
        mine = ours.mbus[device.channel]
        assert ours.mbus_type(device.channel) == device.device_type
        if version in ("2.2", "3.0", "4.0", "4.2"):
            other = theirs.GAS_METER_READING if version in ("2.2", "3.0") else theirs.HOURLY_GAS_METER_READING
            other_time, other_value, other_unit = other.datetime, other.value, other.unit
        else:
            reading = theirs.get_mbus_device_by_channel(device.channel).MBUS_METER_READING
            other_time, other_value, other_unit = reading.datetime, reading.value, reading.unit
        assert mine.timestamp == other_time == device.timestamp.replace(microsecond=0)
        assert (mine.quantity.value, mine.quantity.unit) == (other_value, other_unit) == (device.value, device.unit)


def test_smarty_frames_decrypt_as_dsmr_parser_decrypts_them() -> None:
    plain = build_version_telegram(values(MOMENTS[1]), "smarty", devices=devices("smarty", MOMENTS[1]))
    frame = encrypt_telegram(plain, key=KEY, system_title=b"SAGY0001", frame_counter=7, authentication_key=AUTH)
    assert decrypt_frame(frame, key=KEY, authentication_key=AUTH) == plain
    assert decrypt_frame(frame, key=KEY, authentication_key=None) == plain  # the CRC guards it then
    with pytest.raises(SmartyDecryptionError):
        decrypt_frame(frame, key=KEY, authentication_key=bytes(16))
    with pytest.raises(SmartyDecryptionError):
        decrypt_frame(frame, key=bytes(16), authentication_key=None)
    spec = {**telegram_specifications.LUXEMBOURG_SMARTY, "general_global_cipher": True}
    theirs = TelegramParser(spec).parse(frame.hex(), encryption_key=KEY.hex(), authentication_key=AUTH.hex(),
                                        throw_ex=True)
    ours = parse_telegram(decrypt_frame(frame, key=KEY, authentication_key=AUTH))
    assert ours.quantity("1-0:1.8.0").value == theirs.ELECTRICITY_IMPORTED_TOTAL.value == Decimal("3580.245")


def test_a_crc_is_required_where_the_version_has_one() -> None:
    with_crc = build_version_telegram(values(MOMENTS[0]), "4.2")
    without = with_crc[: with_crc.rindex(b"!") + 1] + b"\r\n"
    with pytest.raises(MalformedTelegram, match="version needs one"):
        parse_telegram(without)
    old = build_version_telegram(values(MOMENTS[0]), "3.0")
    assert old.endswith(b"!\r\n") and parse_telegram(old).crc is None
    # A damaged line still fails a telegram without CRC.
    with pytest.raises(MalformedTelegram):
        parse_telegram(old.replace(b"1-0:1.8.1(", b"1-0:1.8.1(x"))


async def _read(reader: P1Reader, count: int) -> list:
    out = []
    async with asyncio.timeout(15), contextlib.aclosing(reader.readings()) as readings:
        async for reading in readings:
            out.append(reading)
            if len(out) >= count:
                return out
    return out


CONFIG = parse_adapter_config({"meterIndividualId": "elec-1",
                               "subMeters": [{"channel": 1, "meterIndividualId": "gas-1"}]})


@pytest.mark.parametrize("version", ["2.2", "e-mucs", "smarty"])
async def test_the_simulator_speaks_each_version_to_the_reader(version: str) -> None:
    model = MeterModel(start=MOMENTS[0])
    sim = P1Simulator(model=model, interval=0.01, count=6, dsmr=version,
                      smarty_key=KEY if version == "smarty" else None,
                      smarty_authentication_key=AUTH)
    path = sim.open()
    try:
        async with P1Reader(port=path, config=CONFIG, smarty_key=KEY if version == "smarty" else None,
                            smarty_authentication_key=AUTH) as reader:
            await sim.start()
            readings = await _read(reader, 4)
            assert reader.stats.crc_errors == reader.stats.malformed == 0
    finally:
        await sim.stop()
    meters = {r.meter_id for r in readings}
    assert meters == {"elec-1", "gas-1"}
    elec = [r for r in readings if r.meter_id == "elec-1"]
    ids = {v.property_id for v in elec[0].property_values}
    assert ({"OBIS_1.8.0", "OBIS_2.8.0"} if version == "smarty" else {"OBIS_1.8.1", "OBIS_1.8.2"}) <= ids


async def test_a_telegram_without_crc_whose_register_went_back_is_refused() -> None:
    port = serial.serial_for_url("loop://", timeout=0)
    first = values(MOMENTS[0])
    damaged = replace(first, delivered_t1=Decimal("1034.567"))  # a digit lost on the line
    later = replace(first, delivered_t1=Decimal("1234.600"))
    async with P1Reader(port=port) as reader:
        for v in (first, damaged, later):
            port.write(build_version_telegram(v, "2.2"))
        seen = []
        async with asyncio.timeout(10), contextlib.aclosing(reader.telegrams()) as telegrams:
            async for telegram in telegrams:
                seen.append(telegram.quantity("1-0:1.8.1").value)
                if len(seen) == 2:
                    break
        assert seen == [Decimal("1234.567"), Decimal("1234.600")]
        assert reader.stats.malformed == 1
    port.close()
