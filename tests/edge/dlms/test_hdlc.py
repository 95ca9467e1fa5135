"""The adapter reads a simulated meter over serial HDLC on a pty pair: registers, clock, load profile, LLS."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from edge import config_lean
from edge.config import ConfigError, load_config
from edge.dlms import (
    DlmsAuthenticationError,
    DlmsCommunicationError,
    DlmsMeterAdapter,
    DlmsMeterConfig,
    InvocationCounterStore,
    MeterModel,
    SecurityMode,
)
from edge.dlms.cli import DEMO_PASSWORD
from edge.dlms.meter_model import CLOCK_STATUS_DOUBTFUL, ENERGY_OBIS
from edge.dlms.serial_simulator import DlmsSerialMeterSimulator
from edge.modbus.nullmodem import PtyNullModem
from tests.edge.dlms.conftest import AUTH_KEY, BLOCK_KEY, PASSWORD, ManualClock, server_security
from tests.fixtures.procs import ManagedProcess
from tests.fixtures.waiting import wait_for

ENERGY_IDS = ("OBIS_1.8.1", "OBIS_1.8.2", "OBIS_2.8.1", "OBIS_2.8.2")


@pytest.fixture
async def cable() -> AsyncIterator[PtyNullModem]:
    async with PtyNullModem() as modem:
        yield modem


@pytest.fixture
async def serial_meter(cable: PtyNullModem, model: MeterModel) -> AsyncIterator[DlmsSerialMeterSimulator]:
    async with DlmsSerialMeterSimulator(port=cable.end_a, model=model, security=server_security(SecurityMode.LLS),
                                        name="hdlc-meter") as sim:
        yield sim


def _config(cable: PtyNullModem, password: str = PASSWORD) -> DlmsMeterConfig:
    return DlmsMeterConfig(meter_id="meter-0042", serial=cable.end_b, baudrate=9600, security=SecurityMode.LLS,
                           password=SecretStr(password), timeout_s=2.0, profile="smr-5")


async def test_lls_register_read_over_hdlc(serial_meter: DlmsSerialMeterSimulator, cable: PtyNullModem,
                                           model: MeterModel, clock: ManualClock) -> None:
    adapter = DlmsMeterAdapter(config=_config(cable), time_source=clock)
    assert adapter.bus == f"serial:{cable.end_b}"
    reading = await adapter.read_registers()
    got = {v.property_id: (v.numerical_value, v.unit) for v in reading.property_values}
    assert reading.meter_id == "meter-0042" and reading.reading_time == clock.now
    for pid, obis in zip(ENERGY_IDS, ENERGY_OBIS, strict=True):
        assert got[pid] == (pytest.approx(model.register_value(obis) / 1000), "kWh")
    assert got["OBIS_32.7.0"] == (pytest.approx(model.register_value("1.0.32.7.0.255") / 10), "V")
    assert serial_meter.frames_served > 0


async def test_clock_read_and_repeated_associations_over_hdlc(serial_meter: DlmsSerialMeterSimulator,
                                                              cable: PtyNullModem, model: MeterModel) -> None:
    model.clock_offset = timedelta(seconds=-42)
    model.clock_status = CLOCK_STATUS_DOUBTFUL
    adapter = DlmsMeterAdapter(config=_config(cable))
    # Each call is its own SNRM/AARQ ... RLRQ/DISC on the same line: the meter must take them all.
    for _ in range(2):
        meter_time, status = await adapter.read_clock()
        assert abs(meter_time - model.meter_now()) < timedelta(milliseconds=10)
        assert status == CLOCK_STATUS_DOUBTFUL


async def test_wrong_password_is_refused_over_hdlc(serial_meter: DlmsSerialMeterSimulator,
                                                   cable: PtyNullModem) -> None:
    adapter = DlmsMeterAdapter(config=_config(cable, password="not-the-password"))
    with pytest.raises(DlmsAuthenticationError) as caught:
        await adapter.read_registers()
    message = str(caught.value)
    assert "meter-0042" in message and "refused the association" in message
    assert "not-the-password" not in message and PASSWORD not in message
    # The line is still usable afterwards with the right password.
    reading = await DlmsMeterAdapter(config=_config(cable)).read_registers()
    assert len(reading.property_values) == 6


async def test_load_profile_by_range_over_hdlc(serial_meter: DlmsSerialMeterSimulator, cable: PtyNullModem,
                                               model: MeterModel) -> None:
    adapter = DlmsMeterAdapter(config=_config(cable))
    # Six hours: 25 captures, more than one 128-byte HDLC frame and more than one GET block.
    start, end = datetime(2026, 3, 10, 3, 0, tzinfo=UTC), datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
    readings = await adapter.read_load_profile(start, end)
    assert [r.reading_time for r in readings] == [start + timedelta(minutes=15) * i for i in range(25)]
    for reading in readings:
        assert reading.historical is True
        got = {v.property_id: v.numerical_value for v in reading.property_values}
        for pid, obis in zip(ENERGY_IDS, ENERGY_OBIS, strict=True):
            assert got[pid] == pytest.approx(model.energy_at(obis, reading.reading_time) / 1000)


@pytest.mark.parametrize(("fields", "error"), [
    ({}, "exactly one of 'host'"),
    ({"host": "127.0.0.1", "serial": "/dev/ttyUSB0"}, "exactly one of 'host'"),
    ({"serial": "/dev/ttyUSB0", "baudrate": 12345}, "baudrate must be one of"),
    ({"serial": "/dev/ttyUSB0", "transport": "tcp"}, "does not match"),
    ({"host": "127.0.0.1", "physical_address": 0x10}, "physical_address"),
])
def test_config_needs_exactly_one_valid_link(fields: dict[str, object], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        DlmsMeterConfig.model_validate({"meter_id": "m", "security": "none", **fields})


def test_config_serial_link() -> None:
    config = DlmsMeterConfig(meter_id="m", security=SecurityMode.NONE, serial="/dev/ttyUSB0", baudrate=19200)
    assert (config.link, config.endpoint, config.baudrate) == ("serial", "serial:/dev/ttyUSB0", 19200)
    assert DlmsMeterConfig(meter_id="m", security=SecurityMode.NONE, host="h").endpoint == "tcp:h:4059"


async def test_hdlc_physical_address_selects_the_meter(cable: PtyNullModem, model: MeterModel) -> None:
    # Upper (logical device) 1, lower (physical) 0x11: gurux's two-byte server address (1 << 7) | 0x11.
    security = replace(server_security(SecurityMode.LLS), server_address=(1 << 7) | 0x11)
    async with DlmsSerialMeterSimulator(port=cable.end_a, model=model, security=security):
        right = _config(cable).model_copy(update={"physical_address": 0x11})
        reading = await DlmsMeterAdapter(config=right).read_registers()
        assert len(reading.property_values) == 6
        # A meter ignores frames for another address, so the client times out.
        wrong = _config(cable).model_copy(update={"physical_address": 0x12, "timeout_s": 0.3})
        with pytest.raises(DlmsCommunicationError, match="no answer"):
            await DlmsMeterAdapter(config=wrong).read_registers()


def test_concentrator_config_accepts_a_serial_dlms_meter(tmp_path: Path) -> None:
    path = tmp_path / "concentrator.toml"
    path.write_text('concentrator_id = "c1"\n[[meters]]\nprotocol = "dlms"\nmeter_id = "m-serial"\n'
                    'serial = "/dev/ttyUSB0"\nbaudrate = 19200\nphysical_address = 17\nsecurity = "lls"\n'
                    'password = "pw"\n')
    meter = load_config(path).meters[0]
    assert isinstance(meter, config_lean.DlmsMeter)
    # The concentrator's MeterSet re-validates the entry as a plain DlmsMeterConfig (lean, as it reads it).
    fields = config_lean.DlmsMeterConfig.fields
    plain = config_lean.DlmsMeterConfig.validate({f.name: getattr(meter, f.name) for f in fields})
    assert (plain.link, plain.endpoint, plain.baudrate, plain.physical_address) == (
        "serial", "serial:/dev/ttyUSB0", 19200, 17)
    path.write_text('concentrator_id = "c1"\n[[meters]]\nprotocol = "dlms"\nmeter_id = "m-both"\n'
                    'host = "10.0.0.9"\nserial = "/dev/ttyUSB0"\nsecurity = "none"\n')
    with pytest.raises(ConfigError, match="meter m-both: .*exactly one of 'host'"):
        load_config(path)


async def _wait_for_text(path: Path, text: str, *, proc: ManagedProcess, timeout: float = 20.0) -> None:
    """Wait until the process logged ``text`` (its readiness line), failing if it exits first."""
    def logged() -> bool:
        written = path.read_text() if path.exists() else ""
        assert text in written or proc.running, written
        return text in written

    await wait_for(logged, timeout=timeout, what=f"{text!r} in {path}")


async def test_cli_simulator_serves_hdlc_on_a_serial_port(cable: PtyNullModem, tmp_path: Path) -> None:
    log = tmp_path / "sim.log"
    proc = ManagedProcess(argv=[sys.executable, "-m", "edge.dlms.cli", "--serial-port", cable.end_a,
                                "--security", "lls", "--serial", "GWHDLC000001"],
                          log=log, cwd=Path(__file__).resolve().parents[3])
    await asyncio.to_thread(proc.start)
    try:
        await _wait_for_text(log, f"DLMS meter GWHDLC000001 on serial {cable.end_a} (HDLC)", proc=proc)
        config = _config(cable, password=DEMO_PASSWORD)
        reading = await DlmsMeterAdapter(config=config).read_registers()
        assert {v.property_id for v in reading.property_values} >= {"OBIS_1.8.1", "OBIS_1.7.0"}
    finally:
        await asyncio.to_thread(proc.stop)
    assert not proc.running


async def test_hls_gmac_over_hdlc(cable: PtyNullModem, model: MeterModel, tmp_path: Path) -> None:
    async with DlmsSerialMeterSimulator(port=cable.end_a, model=model,
                                        security=server_security(SecurityMode.HLS_GMAC)) as sim:
        config = DlmsMeterConfig(meter_id="meter-0042", serial=cable.end_b, security=SecurityMode.HLS_GMAC,
                                 block_cipher_key=SecretStr(BLOCK_KEY.hex()),
                                 authentication_key=SecretStr(AUTH_KEY.hex()), timeout_s=2.0, profile="smr-5")
        counters = InvocationCounterStore(tmp_path / "counters.sqlite")
        reading = await DlmsMeterAdapter(config=config, counters=counters).read_registers()
        got = {v.property_id: v.numerical_value for v in reading.property_values}
        assert got["OBIS_1.8.1"] == pytest.approx(model.register_value("1.0.1.8.1.255") / 1000)
        assert sim.guard.last_seen is not None


async def test_missing_serial_port_is_a_communication_error(tmp_path: Path) -> None:
    config = DlmsMeterConfig(meter_id="meter-0042", serial=str(tmp_path / "no-such-tty"), security=SecurityMode.NONE)
    with pytest.raises(DlmsCommunicationError, match=r"meter-0042: cannot connect to serial:"):
        await DlmsMeterAdapter(config=config).read_registers()


def test_simulator_answers_snrm_and_disc_with_ua(model: MeterModel) -> None:
    # Byte level, without I/O: the gurux server fixes must make SNRM and DISC answer UA (not FRMR).
    from gurux_dlms.enums.Authentication import Authentication
    from gurux_dlms.enums.InterfaceType import InterfaceType
    from gurux_dlms.GXDLMSClient import GXDLMSClient
    from gurux_dlms.GXReplyData import GXReplyData

    from edge.dlms.cosem_server import CosemServer, InvocationGuard

    ua = 0x73  # UA with the final bit
    client = GXDLMSClient(True, 1, 1, Authentication.NONE, None, InterfaceType.HDLC)
    server = CosemServer(model=model, security=server_security(SecurityMode.NONE), guard=InvocationGuard(),
                         meter_name="bytes", hdlc=True)
    reply = server.handle_frame(bytes(client.snrmRequest()))
    assert reply is not None and reply[5] == ua
    data = GXReplyData()
    assert client.getData(bytearray(reply), data) and data.error == 0
    client.parseUAResponse(data.data)
    assert (client.hdlcSettings.maxInfoRX, client.hdlcSettings.windowSizeRX) == (128, 1)
    reply = server.handle_frame(bytes(client.disconnectRequest()))
    assert reply is not None and reply[5] == ua


async def test_image_transfer_over_hdlc(serial_meter: DlmsSerialMeterSimulator, cable: PtyNullModem,
                                        model: MeterModel) -> None:
    """Firmware to a serial meter: the same class-18 transfer, block by block over HDLC frames."""
    from edge.dlms.sim_firmware import ImageTransferStatus, build_sim_image

    image = build_sim_image("2.1.0", bytes(range(256)) * 8)  # a few blocks, kept small at 9,600 baud
    adapter = DlmsMeterAdapter(config=_config(cable))
    assert await adapter.read_firmware_version() == "1.0.0"
    report = await adapter.update_firmware(identifier=b"sim-meter-2.1.0", image=image)
    assert report.blocks_sent == report.blocks_total > 1 and not report.resumed
    assert await adapter.read_firmware_version() == "2.1.0"
    assert model.firmware.image() == image
    assert model.firmware.status is ImageTransferStatus.ACTIVATION_SUCCESSFUL
    assert serial_meter.frames_served > report.blocks_total  # every block went as an HDLC frame
