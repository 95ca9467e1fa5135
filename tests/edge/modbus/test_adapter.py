"""The Modbus adapter against the simulator over real TCP sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pymodbus.client import AsyncModbusTcpClient

from edge.modbus import (
    ModbusAdapter,
    ModbusCommunicationError,
    ModbusProtocolError,
    ModbusSimulator,
    PointNotWritableError,
    PointValueError,
    RegisterMap,
    UnknownPointError,
)
from edge.polling.errors import MeterCommunicationError, MeterProtocolError

EXPECTED = {
    "u16": 65535, "i16": -12345, "u32_big": 4_000_000_000, "u32_little": 305_419_896, "i32": -2_000_000_000,
    "u64": 1_234_567_890_123, "i64": -9_876_543_210, "f32": 1.5, "f64": -2.25e10, "scaled": 230.5,
    "readonly_reg": 7, "in_a": 49.99, "in_b": -5000, "coil_a": True, "coil_b": False, "coil_ro": False,
    "din": False,
}


def _client(port: int, timeout: float = 0.5) -> AsyncModbusTcpClient:
    return AsyncModbusTcpClient("127.0.0.1", port=port, timeout=timeout, retries=0, reconnect_delay=0)


@pytest.fixture
async def adapter(all_types_map: RegisterMap, all_types_sim: ModbusSimulator) -> AsyncIterator[ModbusAdapter]:
    client = _client(all_types_sim.port)
    yield ModbusAdapter(register_map=all_types_map, meter_id="meter-7", client=client, unit_id=1)
    client.close()


async def test_every_data_type_reads_back(adapter: ModbusAdapter, all_types_sim: ModbusSimulator) -> None:
    values = await adapter.read_values()
    assert values == pytest.approx(EXPECTED)
    assert isinstance(values["coil_a"], bool)
    # Holding 0..23, input 0 and 10..11, coils 0..2, discrete 5: five requests in all.
    assert adapter.requests_per_read == 5
    assert sum(all_types_sim.request_counts.values()) == 5


async def test_a_reading_is_omdp_shaped(adapter: ModbusAdapter) -> None:
    stamp = datetime(2026, 3, 1, 13, 15, tzinfo=timezone(timedelta(hours=1)))
    reading = await adapter.read(stamp)
    assert reading.reading_time == stamp and reading.reading_time.utcoffset() == timedelta(0)
    assert reading.meter_id == "meter-7"
    assert reading.meter_reading_identifier == reading.derive_id("meter-7", stamp.astimezone(UTC))
    by_property = {pv.property_id: pv for pv in reading.property_values}
    assert by_property["T_scaled"].numerical_value == pytest.approx(230.5)
    assert by_property["T_scaled"].unit == "V"
    assert by_property["T_coil_a"].numerical_value == 1.0
    assert all(pv.date == stamp for pv in reading.property_values)
    assert len(reading.property_values) == len(EXPECTED)


@pytest.mark.parametrize(("name", "value"), [
    ("u16", 1), ("i16", -1), ("u32_big", 70000), ("u32_little", 2**32 - 1), ("i32", -7), ("u64", 2**63),
    ("i64", -(2**40)), ("f32", -0.25), ("f64", 3.0e100), ("scaled", -99.9),
])
async def test_register_writes_read_back(adapter: ModbusAdapter, name: str, value: float) -> None:
    await adapter.write_point(name, value)
    assert (await adapter.read_values())[name] == pytest.approx(value)


async def test_coil_writes_switch_the_mirrored_input(adapter: ModbusAdapter, all_types_sim: ModbusSimulator) -> None:
    await adapter.write_point("coil_b", True)
    await adapter.write_point("coil_a", False)
    values = await adapter.read_values()
    assert (values["coil_a"], values["coil_b"], values["din"]) == (False, True, True)
    assert all_types_sim.value("din") is True


@pytest.mark.parametrize(("name", "value", "error", "message"), [
    ("nope", 1, UnknownPointError, "no point 'nope'"),
    ("readonly_reg", 1, PointNotWritableError, "read-only"),
    ("coil_ro", True, PointNotWritableError, "read-only"),
    ("in_a", 1, PointNotWritableError, "read-only"),
    ("u16", 65536, PointValueError, "out of range"),
    ("i16", -40000, PointValueError, "out of range"),
    ("scaled", 300.1, PointValueError, "out of range"),
    ("u32_big", 1.5e10, PointValueError, "out of range"),
    ("f32", float("nan"), PointValueError, "finite"),
    ("coil_a", 1, PointValueError, "True or False"),
    ("u16", True, PointValueError, "finite number"),
    ("u16", "12", PointValueError, "finite number"),
])
async def test_bad_writes_are_refused_before_sending(adapter: ModbusAdapter, all_types_sim: ModbusSimulator,
                                                    name: str, value: object, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        await adapter.write_point(name, value)  # type: ignore[arg-type]
    assert not all_types_sim.request_counts  # nothing reached the device


async def test_illegal_address_is_a_protocol_error(all_types_map: RegisterMap, all_types_sim: ModbusSimulator) -> None:
    document = all_types_map.model_dump(by_alias=True)
    document["points"].append({"name": "ghost", "address": 40, "register": "input", "type": "uint16",
                               "property": "T_ghost"})
    wider = RegisterMap.model_validate(document)
    client = _client(all_types_sim.port)
    try:
        adapter = ModbusAdapter(register_map=wider, meter_id="meter-7", client=client)
        with pytest.raises(ModbusProtocolError, match="illegal data address") as info:
            await adapter.read_values()
        assert isinstance(info.value, MeterProtocolError) and not info.value.transient
        assert info.value.exception_code == 2
    finally:
        client.close()


async def test_the_device_refusing_a_value_is_a_protocol_error(all_types_map: RegisterMap,
                                                               all_types_sim: ModbusSimulator) -> None:
    # An adapter whose map lacks the limits the device enforces: the device says no.
    document = all_types_map.model_dump(by_alias=True)
    for point in document["points"]:
        if point["name"] == "scaled":
            point["minimum"] = point["maximum"] = None
    client = _client(all_types_sim.port)
    try:
        adapter = ModbusAdapter(register_map=RegisterMap.model_validate(document), meter_id="meter-7", client=client)
        with pytest.raises(ModbusProtocolError, match="illegal data value"):
            await adapter.write_point("scaled", 350.0)
        assert (await adapter.read_values())["scaled"] == pytest.approx(230.5)
    finally:
        client.close()


async def test_a_stopped_device_is_a_transient_error_until_it_returns(adapter: ModbusAdapter,
                                                                     all_types_sim: ModbusSimulator) -> None:
    await adapter.read_values()
    await all_types_sim.stop()
    with pytest.raises(ModbusCommunicationError) as info:
        await adapter.read_values()
    assert isinstance(info.value, MeterCommunicationError) and info.value.transient
    with pytest.raises(ModbusCommunicationError, match="cannot connect"):
        await adapter.read_values()
    await all_types_sim.start()
    assert (await adapter.read_values())["u16"] == 65535


async def test_a_silent_device_times_out_as_a_transient_error(all_types_map: RegisterMap,
                                                              all_types_sim: ModbusSimulator) -> None:
    client = _client(all_types_sim.port, timeout=0.1)
    try:
        adapter = ModbusAdapter(register_map=all_types_map, meter_id="meter-7", client=client)
        all_types_sim.silent = True
        with pytest.raises(ModbusCommunicationError):
            await adapter.read_values()
        all_types_sim.silent = False
        assert (await adapter.read_values())["i16"] == -12345
    finally:
        client.close()
