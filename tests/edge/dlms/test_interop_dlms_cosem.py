"""An independent client (dlms-cosem, MIT) against the simulated meter: it speaks real DLMS, not only
gurux's. LLS and HLS-GMAC, over WRAPPER on TCP and HDLC on a pty: association, every object of the
meter, profile generic by range, clock set, disconnect and reconnect, the public client 16.

dlms-cosem is a test dependency only: the concentrator never imports it (tests/test_layers.py).
It has no image transfer procedure, so image transfer is checked with gurux (test_image_transfer).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
from dlms_cosem import cosem, dlms_data, enumerations
from dlms_cosem.client import DataResultError, DlmsClient
from dlms_cosem.cosem.capture_object import CaptureObject
from dlms_cosem.cosem.selective_access import RangeDescriptor
from dlms_cosem.exceptions import DlmsClientException
from dlms_cosem.io import BlockingTcpIO, HdlcTransport, SerialIO, TcpTransport
from dlms_cosem.security import (
    HighLevelSecurityGmacAuthentication,
    LowLevelSecurityAuthentication,
    NoSecurityAuthentication,
)
from dlms_cosem.time import datetime_from_bytes, datetime_to_bytes
from dlms_cosem.utils import parse_as_dlms_data

from edge.dlms import DlmsMeterSimulator, MeterModel, SecurityMode
from edge.dlms.cosem_objects import (
    DISCONNECT_LOG_OBIS,
    LOAD_PROFILE_2_OBIS,
    LOAD_PROFILE_OBIS,
    POWER_FAILURE_LOG_OBIS,
)
from edge.dlms.meter_model import DISCONNECT_EVENT_REMOTE_OFF, REGISTERS
from edge.dlms.serial_simulator import DlmsSerialMeterSimulator
from edge.modbus.nullmodem import PtyNullModem
from tests.edge.dlms.conftest import AUTH_KEY, BLOCK_KEY, PASSWORD, ManualClock, server_security

CLIENT_TITLE = b"INTEROP1"
Interface = enumerations.CosemInterface
UNIT_CODES = {"Wh": 30, "W": 27, "V": 35, "A": 33}


def _attribute(interface: Interface, obis: str, attribute: int) -> cosem.CosemAttribute:
    return cosem.CosemAttribute(interface=interface, instance=cosem.Obis.from_string(obis), attribute=attribute)


def _client(transport: object, mode: SecurityMode, *, counter: int = 0) -> DlmsClient:
    if mode is SecurityMode.HLS_GMAC:
        return DlmsClient(transport=transport, authentication=HighLevelSecurityGmacAuthentication(challenge_length=32),
                          encryption_key=BLOCK_KEY, authentication_key=AUTH_KEY, client_system_title=CLIENT_TITLE,
                          client_initial_invocation_counter=counter)
    if mode is SecurityMode.LLS:
        return DlmsClient(transport=transport, authentication=LowLevelSecurityAuthentication(secret=PASSWORD.encode()))
    return DlmsClient(transport=transport, authentication=NoSecurityAuthentication())


@pytest.fixture(params=["wrapper-tcp", "hdlc-pty"])
async def connect(request: pytest.FixtureRequest, model: MeterModel) -> AsyncIterator[Callable[..., DlmsClient]]:
    """Starts a meter (security given later) and makes dlms-cosem clients for it on one transport."""
    started: list[object] = []

    async def meter(mode: SecurityMode) -> Callable[..., DlmsClient]:
        if request.param == "wrapper-tcp":
            sim = DlmsMeterSimulator(model=model, security=server_security(mode), name="interop-meter")
            await sim.start()
            started.append(sim)
            return lambda client_sap=1, mode=mode, counter=0: _client(TcpTransport(
                client_logical_address=client_sap, server_logical_address=1,
                io=BlockingTcpIO(host="127.0.0.1", port=sim.port, timeout=5)), mode, counter=counter)
        cable = PtyNullModem()
        await cable.__aenter__()
        started.append(cable)
        serial = DlmsSerialMeterSimulator(port=cable.end_a, model=model, security=server_security(mode),
                                          name="interop-hdlc")
        await serial.start()
        started.append(serial)
        return lambda client_sap=1, mode=mode, counter=0: _client(HdlcTransport(
            client_logical_address=client_sap, server_logical_address=1,
            io=SerialIO(port_name=cable.end_b, baud_rate=9600, timeout=5)), mode, counter=counter)

    yield meter  # type: ignore[misc]
    for part in reversed(started):
        if isinstance(part, PtyNullModem):
            await part.__aexit__(None, None, None)
        else:
            await part.stop()  # type: ignore[attr-defined]


def _moment(raw: bytes) -> datetime:
    """A COSEM date-time as dlms-cosem reads it; its reading of deviation 0 (UTC) as "not specified"
    (docs/DLMS.md) is undone here, after checking the bytes do say 0 and not 0x8000."""
    moment, _ = datetime_from_bytes(raw)
    if moment.tzinfo is None:
        assert raw[9:11] == b"\x00\x00", raw
        moment = moment.replace(tzinfo=UTC)
    return moment


def _whole_session(client: DlmsClient, model: MeterModel, clock: ManualClock) -> None:
    """Everything an operator's head-end does with a meter, through dlms-cosem."""
    with client.session():
        # Every register: its value, and its scaler and unit as REGISTERS says.
        for obis, (exponent, unit) in REGISTERS.items():
            value = parse_as_dlms_data(client.get(_attribute(Interface.REGISTER, obis, 2)))
            assert value == model.register_value(obis), obis
            assert parse_as_dlms_data(client.get(_attribute(Interface.REGISTER, obis, 3))) == [exponent,
                                                                                              UNIT_CODES[unit]], obis
        # Load profile 1 by range: the last two hours, in the meter's clock.
        now = model.meter_now()
        clock_column = CaptureObject(cosem_attribute=_attribute(Interface.CLOCK, "0.0.1.0.0.255", 2))
        rows = parse_as_dlms_data(client.get(
            _attribute(Interface.PROFILE_GENERIC, LOAD_PROFILE_OBIS, 2),
            access_descriptor=RangeDescriptor(restricting_object=clock_column, from_value=now - timedelta(hours=2),
                                              to_value=now)))
        expected = model.profile_rows(now - timedelta(hours=2), now)
        assert len(rows) == len(expected) == 8
        for row, truth in zip(rows, expected, strict=True):
            assert _moment(row[0]) == truth.time
            assert tuple(row[1:]) == truth.energy_wh
        # Load profile 2 (daily), and the logs.
        daily = parse_as_dlms_data(client.get(_attribute(Interface.PROFILE_GENERIC, LOAD_PROFILE_2_OBIS, 2)))
        assert [_moment(r[0]) for r in daily] == [r.time for r in model.profile_rows(
            period=timedelta(days=1))]
        failures = parse_as_dlms_data(client.get(_attribute(Interface.PROFILE_GENERIC, POWER_FAILURE_LOG_OBIS, 2)))
        assert [(_moment(r[0]), r[1]) for r in failures] == model.power_failures
        # Disconnect and reconnect: the breaker follows and the disconnector log records it.
        disconnector = cosem.CosemMethod(enumerations.CosemInterface.DISCONNECT_CONTROL,
                                         cosem.Obis.from_string("0.0.96.3.10.255"), 1)
        client.action(disconnector, dlms_data.IntegerData(0).to_bytes())
        assert model.output_state is False
        assert parse_as_dlms_data(client.get(_attribute(Interface.DISCONNECT_CONTROL, "0.0.96.3.10.255", 2))) is False
        log = parse_as_dlms_data(client.get(_attribute(Interface.PROFILE_GENERIC, DISCONNECT_LOG_OBIS, 2)))
        assert log[-1][1] == DISCONNECT_EVENT_REMOTE_OFF
        client.action(cosem.CosemMethod(enumerations.CosemInterface.DISCONNECT_CONTROL,
                                        cosem.Obis.from_string("0.0.96.3.10.255"), 2), dlms_data.IntegerData(0).to_bytes())
        assert model.output_state is True
        # Clock set, written in local time with the Blue Book's deviation (CET: -60).
        target = datetime(2026, 3, 10, 13, 0, 0, tzinfo=timezone(timedelta(hours=1)))
        client.set(_attribute(Interface.CLOCK, "0.0.1.0.0.255", 2),
                   dlms_data.OctetStringData(datetime_to_bytes(target)).to_bytes())
        assert abs(model.meter_now() - target) < timedelta(seconds=1)
        read_back = _moment(parse_as_dlms_data(client.get(_attribute(Interface.CLOCK, "0.0.1.0.0.255", 2))))
        assert abs(read_back - target) < timedelta(seconds=1)


@pytest.mark.parametrize("mode", [SecurityMode.LLS, SecurityMode.HLS_GMAC], ids=["lls", "hls-gmac"])
async def test_dlms_cosem_does_everything_a_head_end_does(connect, mode: SecurityMode, model: MeterModel,
                                                         clock: ManualClock) -> None:
    model.record_power_failure(clock.now - timedelta(days=1), 3600)
    make = await connect(mode)
    # dlms-cosem is blocking; it runs in a worker thread while the simulator serves on this loop.
    await asyncio.to_thread(_whole_session, make(), model, clock)
    if mode is SecurityMode.HLS_GMAC:
        # A second association: the meter's invocation counter went on rising, the client's is new.
        await asyncio.to_thread(_read_name, make(counter=1000))


def _read_name(client: DlmsClient) -> bytes:
    with client.session():
        return parse_as_dlms_data(client.get(_attribute(Interface.DATA, "0.0.42.0.0.255", 2)))


def _public_reads(client: DlmsClient) -> tuple[bytes, list, list]:
    with client.session():
        name = parse_as_dlms_data(client.get(_attribute(Interface.DATA, "0.0.42.0.0.255", 2)))
        saps = parse_as_dlms_data(client.get(_attribute(Interface.SAP_ASSIGNMENT, "0.0.41.0.0.255", 2)))
        objects = parse_as_dlms_data(client.get(_attribute(Interface.ASSOCIATION_LN, "0.0.40.0.0.255", 2)))
        with pytest.raises(DataResultError):
            client.get(_attribute(Interface.REGISTER, "1.0.1.8.0.255", 2))
    return name, saps, objects


async def test_public_client_16_reads_who_the_meter_is_and_nothing_more(connect) -> None:
    make = await connect(SecurityMode.HLS_GMAC)
    name, saps, objects = await asyncio.to_thread(_public_reads, make(client_sap=16, mode=SecurityMode.NONE))
    assert name == b"GWTEST000042"
    assert saps == [[1, b"GWTEST000042"]]
    listed = {bytes(entry[2]) for entry in objects}
    assert {bytes(cosem.Obis.from_string(o).to_bytes()) for o in REGISTERS} <= listed


def _refused(client: DlmsClient) -> None:
    with pytest.raises(DlmsClientException), client.session():
        pass


async def test_unknown_client_sap_and_wrong_security_are_refused(lls_meter: DlmsMeterSimulator) -> None:
    def tcp(client_sap: int) -> TcpTransport:
        return TcpTransport(client_logical_address=client_sap, server_logical_address=1,
                            io=BlockingTcpIO(host="127.0.0.1", port=lls_meter.port, timeout=2))

    # The management client without its password, and client 16 asking for LLS.
    await asyncio.to_thread(_refused, _client(tcp(1), SecurityMode.NONE))
    await asyncio.to_thread(_refused, _client(tcp(16), SecurityMode.LLS))
    assert datetime.now(UTC)  # the simulator is still serving: a good association works after them
    assert await asyncio.to_thread(_read_name, _client(tcp(1), SecurityMode.LLS)) == b"GWTEST000042"
