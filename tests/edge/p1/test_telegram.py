"""DSMR 5 telegram codec: CRC vectors, a published telegram, S/W timestamps, build/parse round trips."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.p1.telegram import (
    SUMMER,
    WINTER,
    CrcMismatch,
    GasValue,
    MalformedTelegram,
    P1Values,
    PowerFailure,
    build_telegram,
    crc16_arc,
    format_timestamp,
    frame_telegram,
    is_eu_summer_time,
    parse_telegram,
    parse_timestamp,
)

# A DSMR 5 telegram published with its CRC by several independent P1 parser projects.
PUBLISHED = "\r\n".join([
    "/ISk5\\2MT382-1000", "", "1-3:0.2.8(50)", "0-0:1.0.0(170102192002W)",
    "0-0:96.1.1(4B384547303034303436333935353037)", "1-0:1.8.1(000004.426*kWh)",
    "1-0:1.8.2(000002.399*kWh)", "1-0:2.8.1(000002.444*kWh)", "1-0:2.8.2(000000.000*kWh)",
    "0-0:96.14.0(0002)", "1-0:1.7.0(00.244*kW)", "1-0:2.7.0(00.000*kW)", "0-0:96.7.21(00013)",
    "0-0:96.7.9(00000)", "1-0:99.97.0(0)(0-0:96.7.19)", "1-0:32.32.0(00000)", "1-0:52.32.0(00000)",
    "1-0:72.32.0(00000)", "1-0:32.36.0(00000)", "1-0:52.36.0(00000)", "1-0:72.36.0(00000)",
    "0-0:96.13.0()", "1-0:32.7.0(0230.0*V)", "1-0:52.7.0(0230.0*V)", "1-0:72.7.0(0229.0*V)",
    "1-0:31.7.0(0.48*A)", "1-0:51.7.0(0.44*A)", "1-0:71.7.0(0.86*A)", "1-0:21.7.0(00.070*kW)",
    "1-0:41.7.0(00.032*kW)", "1-0:61.7.0(00.142*kW)", "1-0:22.7.0(00.000*kW)", "1-0:42.7.0(00.000*kW)",
    "1-0:62.7.0(00.000*kW)", "0-1:24.1.0(003)", "0-1:96.1.0(3232323241424344313233343536373839)",
    "0-1:24.2.1(170102161005W)(00000.107*m3)", "0-2:24.1.0(003)", "0-2:96.1.0()", "!6EEE", "",
]).encode("ascii")


def test_crc16_arc_catalogue_check_value():
    assert crc16_arc(b"123456789") == 0xBB3D
    assert crc16_arc(b"") == 0


def test_crc16_arc_of_published_telegram():
    bang = PUBLISHED.rindex(b"!")
    assert crc16_arc(PUBLISHED[: bang + 1]) == 0x6EEE


def test_parse_published_telegram():
    t = parse_telegram(PUBLISHED)
    assert t.header == "ISk5\\2MT382-1000"
    assert t.version == "50"
    assert t.crc == 0x6EEE
    assert t.timestamp == datetime(2017, 1, 2, 18, 20, 2, tzinfo=UTC)
    assert t.timestamp.utcoffset() == timedelta(hours=1)
    assert t.equipment_id == "K8EG004046395507"
    assert t.tariff == 2
    assert t.quantity("1-0:1.8.1").value == Decimal("4.426")
    assert t.quantity("1-0:1.8.1").unit == "kWh"
    assert t.quantity("1-0:1.7.0").unit == "kW"
    assert t.quantity("1-0:72.7.0").value == Decimal("229.0")
    assert t.quantity("1-0:31.7.0").value == Decimal("0.48")
    assert t.quantity("0-0:96.7.21").value == 13 and t.quantity("0-0:96.7.21").unit is None
    assert t.power_failures == ()
    assert set(t.mbus) == {1}
    gas = t.mbus[1]
    assert gas.quantity.value == Decimal("0.107") and gas.quantity.unit == "m3"
    assert gas.timestamp == datetime(2017, 1, 2, 16, 10, 5, tzinfo=WINTER)
    assert t.text("0-0:96.13.0") == ""


def test_crc_mismatch_is_reported():
    broken = PUBLISHED.replace(b"000004.426", b"000004.427")
    with pytest.raises(CrcMismatch, match="6EEE"):
        parse_telegram(broken)


def test_corrupt_crc_builder_is_detected():
    values = P1Values(timestamp=datetime(2024, 11, 22, 13, 30, tzinfo=UTC))
    assert parse_telegram(build_telegram(values)).timestamp == values.timestamp
    with pytest.raises(CrcMismatch):
        parse_telegram(build_telegram(values, corrupt_crc=True))


@pytest.mark.parametrize("data, reason", [
    (b"ISK5\r\n!0000\r\n", "start"),
    (b"/ISK5\r\n\r\n1-0:1.8.1(1*kWh)\r\n", "'!'"),
    (b"/ISK5\r\n\r\n!12G4\r\n", "CRC"),
])
def test_bad_framing_is_malformed(data, reason):
    with pytest.raises(MalformedTelegram, match=reason):
        parse_telegram(data)


@pytest.mark.parametrize("line, reason", [
    ("garbage line", "line 4 is not a COSEM object"),
    ("1-0:1.8.1(12a.4*kWh)", "bad number"),
    ("0-0:1.0.0(241322143000W)", "timestamp"),
    ("0-0:1.0.0(241122143000X)", "timestamp"),
    ("0-1:24.2.1(00012.345*m3)", "needs a timestamp"),
])
def test_bad_content_is_malformed(line, reason):
    with pytest.raises(MalformedTelegram, match=reason):
        parse_telegram(frame_telegram("ISK5\\2M550T-1012", ["1-3:0.2.8(50)", line]))


def test_non_ascii_is_malformed():
    body = b"/ISK5\r\n\r\n0-0:96.13.0(\xff)\r\n!"
    data = body + f"{crc16_arc(body):04X}\r\n".encode()
    with pytest.raises(MalformedTelegram, match="ASCII"):
        parse_telegram(data)


@pytest.mark.parametrize("log, expected", [
    ("(2)(0-0:96.7.19)(101208152415W)(0000000240*s)(101208151004W)(0000000301*s)",
     (PowerFailure(datetime(2010, 12, 8, 15, 24, 15, tzinfo=WINTER), timedelta(seconds=240)),
      PowerFailure(datetime(2010, 12, 8, 15, 10, 4, tzinfo=WINTER), timedelta(seconds=301)))),
    ("(0)(0-0:96.7.19)", ()),
    ("()(0-0:96.7.19)", ()),
    # Count and entries disagree, or a bad entry: skipped, never an error.
    ("(3)(0-0:96.7.19)(101208152415W)(0000000240*s)", ()),
    ("(1)(0-0:96.7.19)(1012081524W)(0000000240*s)", ()),
])
def test_power_failure_log(log, expected):
    data = frame_telegram("ISK5\\2M550T-1012", ["0-0:1.0.0(241122143000W)", f"1-0:99.97.0{log}"])
    assert parse_telegram(data).power_failures == expected


def test_season_flag():
    assert parse_timestamp("240722143000S") == datetime(2024, 7, 22, 12, 30, tzinfo=UTC)
    assert parse_timestamp("240722143000S").utcoffset() == timedelta(hours=2)
    assert parse_timestamp("241122143000W") == datetime(2024, 11, 22, 13, 30, tzinfo=UTC)
    assert parse_timestamp("241122143000W").tzinfo is WINTER
    # The hour that repeats when the clocks go back (27 Oct 2024, 03:00 CEST -> 02:00 CET).
    first = parse_timestamp("241027023000S")
    second = parse_timestamp("241027023000W")
    assert second - first == timedelta(hours=1)
    assert format_timestamp(first) == "241027023000S"
    assert format_timestamp(second) == "241027023000W"


def test_eu_summer_time_boundaries():
    assert not is_eu_summer_time(datetime(2024, 3, 31, 0, 59, 59, tzinfo=UTC))
    assert is_eu_summer_time(datetime(2024, 3, 31, 1, 0, 0, tzinfo=UTC))
    assert is_eu_summer_time(datetime(2024, 10, 27, 0, 59, 59, tzinfo=UTC))
    assert not is_eu_summer_time(datetime(2024, 10, 27, 1, 0, 0, tzinfo=UTC))
    assert format_timestamp(datetime(2024, 7, 1, 10, 0, tzinfo=UTC)) == "240701120000S"
    assert format_timestamp(datetime(2024, 12, 1, 10, 0, tzinfo=UTC)) == "241201110000W"


moments = st.datetimes(min_value=datetime(2000, 1, 2), max_value=datetime(2099, 12, 30),
                       timezones=st.just(UTC)).map(lambda d: d.replace(microsecond=0))


@given(moments)
def test_timestamp_round_trip(moment):
    parsed = parse_timestamp(format_timestamp(moment))
    assert parsed == moment
    assert parsed.tzinfo in (SUMMER, WINTER)
    assert (parsed.tzinfo is SUMMER) == is_eu_summer_time(moment)


def kwh():
    return st.decimals(min_value=0, max_value=Decimal("999999.999"), places=3)


def kw():
    return st.decimals(min_value=0, max_value=Decimal("99.999"), places=3)


p1_values = st.builds(
    P1Values,
    timestamp=moments,
    equipment_id=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=48),
    delivered_t1=kwh(), delivered_t2=kwh(), returned_t1=kwh(), returned_t2=kwh(),
    tariff=st.integers(1, 4),
    power_delivered=kw(), power_returned=kw(),
    voltages=st.tuples(*[st.decimals(min_value=0, max_value=Decimal("999.9"), places=1)] * 3),
    currents=st.tuples(*[st.integers(0, 999)] * 3),
    power_failures=st.integers(0, 99999),
    long_power_failures=st.integers(0, 99999),
    failure_log=st.lists(st.builds(PowerFailure, ended=moments,
                                   duration=st.integers(0, 9_999_999_999).map(lambda s: timedelta(seconds=s))),
                         max_size=10),
    gas=st.lists(st.builds(GasValue, channel=st.integers(1, 4), timestamp=moments,
                           m3=st.decimals(min_value=0, max_value=Decimal("99999.999"), places=3)),
                 max_size=4, unique_by=lambda g: g.channel),
)


@settings(max_examples=150, deadline=None)
@given(p1_values)
def test_build_then_parse_gives_the_same_values(v):
    t = parse_telegram(build_telegram(v))
    assert t.header == v.header
    assert t.timestamp == v.timestamp
    assert t.equipment_id == v.equipment_id
    assert t.tariff == v.tariff
    for obis, expected, unit in [
        ("1-0:1.8.1", v.delivered_t1, "kWh"), ("1-0:1.8.2", v.delivered_t2, "kWh"),
        ("1-0:2.8.1", v.returned_t1, "kWh"), ("1-0:2.8.2", v.returned_t2, "kWh"),
        ("1-0:1.7.0", v.power_delivered, "kW"), ("1-0:2.7.0", v.power_returned, "kW"),
        ("1-0:21.7.0", v.power_delivered, "kW"), ("1-0:22.7.0", v.power_returned, "kW"),
        ("1-0:32.7.0", v.voltages[0], "V"), ("1-0:72.7.0", v.voltages[2], "V"),
        ("1-0:51.7.0", v.currents[1], "A"),
        ("0-0:96.7.21", v.power_failures, None), ("0-0:96.7.9", v.long_power_failures, None),
    ]:
        q = t.quantity(obis)
        assert (q.value, q.unit) == (expected, unit), obis
    assert t.power_failures == tuple(v.failure_log)
    assert {ch: (m.timestamp, m.quantity.value, m.quantity.unit) for ch, m in t.mbus.items()} == {
        g.channel: (g.timestamp, g.m3, "m3") for g in v.gas
    }


def test_values_that_do_not_fit_are_refused():
    with pytest.raises(ValueError, match="does not fit"):
        build_telegram(P1Values(timestamp=datetime(2024, 1, 1, tzinfo=UTC), delivered_t1=Decimal("1000000")))


def test_header_with_slash_is_refused():
    # A '/' inside a telegram would break resynchronisation in the framer.
    with pytest.raises(ValueError, match="header"):
        frame_telegram("ISK5/x", [])
