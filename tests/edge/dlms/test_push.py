"""DLMS pushes: the codec, the simulator's pushes and the concentrator's listener on TCP and HDLC.

The simulator pushes data notifications through its push setups (class 40) over a real socket
or a pty; the listener decodes them, finds the meter and puts its events in a real outbox."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from broker.schemas import DeviceEvent, DeviceEventType
from edge.dlms import DlmsMeterAdapter, DlmsMeterSimulator, MeterModel
from edge.dlms.alarms import STANDARD_EVENT_CODE_OBIS, alarm_bit
from edge.dlms.config import SecurityMode
from edge.dlms.push import PushError, decode_apdu, decode_frame, frame_apdu, notification_events, sealed, unseal
from edge.dlms.push_listener import PushListener
from edge.dlms.sim_push import MeterPusher, PushCipher
from edge.events import DeviceEvents
from edge.outbox import Outbox
from tests.edge.dlms.conftest import AUTH_KEY, BLOCK_KEY, SERVER_TITLE, ManualClock, make_config
from tests.fixtures.waiting import wait_for

METER = "meter-0042"


@pytest.mark.parametrize("hdlc", [False, True])
def test_a_pushed_event_code_decodes_to_its_event(model: MeterModel, hdlc: bool) -> None:
    pusher = MeterPusher(model=model)
    from gurux_dlms.enums.DataType import DataType

    [frame] = pusher.frames("0.1.25.9.0.255", 1, DataType.UINT8, hdlc=hdlc)
    notification = decode_frame(frame, hdlc=hdlc)
    assert notification.device_name == model.serial and notification.values[STANDARD_EVENT_CODE_OBIS] == 1
    assert notification.time == model.meter_now()
    [event] = notification_events(notification, METER, received_at=datetime.now(UTC))
    assert event.event_type is DeviceEventType.POWER_FAILURE and event.device_id == METER
    assert event.detail["name"] == "POWER_FAILURE"
    if hdlc:
        assert notification.hdlc_address == 1


def test_an_event_notification_names_its_object_and_value(model: MeterModel) -> None:
    from gurux_dlms.enums.DataType import DataType
    from gurux_dlms.enums.InterfaceType import InterfaceType
    from gurux_dlms.GXDLMSNotify import GXDLMSNotify
    from gurux_dlms.objects.GXDLMSData import GXDLMSData

    register = GXDLMSData("0.0.97.98.0.255")
    register.value = 1 << alarm_bit("FRAUD_ATTEMPT") | 1 << alarm_bit("REPLACE_BATTERY")
    register.setDataType(2, DataType.UINT32)
    at = datetime(2026, 3, 10, 12, 0, 5, tzinfo=UTC)
    [frame] = GXDLMSNotify(True, 1, 1, InterfaceType.WRAPPER).generateReport(at, [(register, 2)])
    notification = decode_frame(bytes(frame), hdlc=False)
    assert notification.kind == "event" and notification.device_name is None and notification.time == at
    kinds = sorted(e.event_type for e in notification_events(notification, METER, received_at=at))
    assert kinds == [DeviceEventType.METER_ALARM, DeviceEventType.TAMPER]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80), st.booleans())
def test_bad_frames_raise_push_error_only(data: bytes, hdlc: bool) -> None:
    with contextlib.suppress(PushError):
        decode_frame(data, hdlc=hdlc)


def test_an_unknown_push_setup_is_refused(model: MeterModel) -> None:
    from gurux_dlms.enums.DataType import DataType

    [frame] = MeterPusher(model=model).frames("0.1.25.9.0.255", 1, DataType.UINT8, hdlc=False)
    tampered = frame.replace(bytes([0, 1, 25, 9, 0, 255]), bytes([0, 7, 25, 9, 0, 255]))
    with pytest.raises(PushError, match="unknown push setup"):
        decode_frame(tampered, hdlc=False)


@pytest.fixture
async def events_box(tmp_path: Path) -> AsyncIterator[tuple[Outbox, DeviceEvents]]:
    outbox = Outbox(tmp_path / "outbox.sqlite")
    events = DeviceEvents(outbox=outbox, concentrator_id="conc-1", state=tmp_path / "state.sqlite")
    yield outbox, events
    events.close()
    outbox.close()


def queued(outbox: Outbox) -> list[tuple[str, DeviceEvent]]:
    return [(m.topic, DeviceEvent.model_validate_json(m.payload)) for m in outbox.after(0, limit=1000)]


@contextlib.asynccontextmanager
async def listening(listener: PushListener) -> AsyncIterator[PushListener]:
    task = asyncio.create_task(listener.run(), name="push-listener-under-test")
    try:
        await asyncio.wait_for(listener.listening.wait(), 10)
        yield listener
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_the_simulator_pushes_power_tamper_disconnector_and_alarms_over_tcp(
        lls_meter: DlmsMeterSimulator, events_box, clock: ManualClock) -> None:
    outbox, events = events_box
    config = make_config(lls_meter, device_name=lls_meter.model.serial)
    async with listening(PushListener(meters=[config], sink=events.submit, port=0, clock=clock)) as listener:
        # The concentrator (a DLMS client) points the meter's push setup at itself: class 40, attribute 3.
        adapter = DlmsMeterAdapter(config=config)
        async with adapter.session():
            await adapter.set_push_destination(f"127.0.0.1:{listener.port}")
        assert lls_meter.model.push_destination == f"127.0.0.1:{listener.port}"

        await lls_meter.pull_power()
        clock.advance(timedelta(seconds=60))
        await lls_meter.restore_power()
        await lls_meter.pusher.open_cover()
        await lls_meter.pusher.raise_alarm(alarm_bit("REPLACE_BATTERY"))
        await adapter.disconnect()  # a COSEM method; the meter pushes the switch on its own
        await wait_for(lambda: len(outbox) >= 6, timeout=20, what="every pushed event in the outbox")

    got = queued(outbox)
    assert {topic for topic, _ in got} == {f"concentrator/conc-1/event/{METER}"}
    kinds = [e.event_type for _, e in got]
    assert kinds[:2] == [DeviceEventType.POWER_FAILURE, DeviceEventType.POWER_RESTORED]
    assert kinds.count(DeviceEventType.TAMPER) == 2  # the cover opened (fraud log) and the fraud alarm bit
    assert DeviceEventType.DISCONNECTOR_OPENED in kinds
    alarms = [e.detail["name"] for _, e in got if e.event_type is DeviceEventType.METER_ALARM]
    assert alarms == ["REPLACE_BATTERY"]
    assert got[1][1].occurred_at - got[0][1].occurred_at == (clock.now - got[0][1].occurred_at)
    assert lls_meter.pusher.failed == 0


async def test_a_push_repeated_is_queued_once(lls_meter: DlmsMeterSimulator, events_box, clock: ManualClock) -> None:
    outbox, events = events_box
    config = make_config(lls_meter, device_name=lls_meter.model.serial)
    async with listening(PushListener(meters=[config], sink=events.submit, port=0, clock=clock)) as listener:
        lls_meter.model.push_destination = f"127.0.0.1:{listener.port}"
        for _ in range(2):  # the clock stands still: the same event at the same instant
            await lls_meter.pusher.power_failure()
        await wait_for(lambda: listener.stats.frames == 2, what="both pushes received")
    assert len(outbox) == 1 and events.repeated == 1


async def test_pushes_from_strangers_are_dropped(lls_meter: DlmsMeterSimulator, events_box, clock) -> None:
    outbox, events = events_box
    config = make_config(lls_meter, device_name="SOMEONE-ELSE", host="192.0.2.1")
    async with listening(PushListener(meters=[config], sink=events.submit, port=0, clock=clock)) as listener:
        lls_meter.model.push_destination = f"127.0.0.1:{listener.port}"
        await lls_meter.pusher.power_failure()
        await wait_for(lambda: listener.stats.refused_connections >= 1, what="the stranger refused")
    assert len(outbox) == 0


async def test_pushes_arrive_on_an_hdlc_serial_line(model: MeterModel, events_box, clock: ManualClock) -> None:
    from gurux_dlms.enums.DataType import DataType

    outbox, events = events_box
    master, slave = os.openpty()
    try:
        from pydantic import SecretStr

        from edge.dlms import DlmsMeterConfig

        config = DlmsMeterConfig(meter_id=METER, serial=os.ttyname(slave), password=SecretStr("x"),
                                 device_name=model.serial, server_address=1)
        pusher = MeterPusher(model=model)
        async with listening(PushListener(meters=[config], sink=events.submit, serial_lines=[os.ttyname(slave)],
                                          clock=clock)) as listener:
            # Noise on the line first, then a data notification and an event notification.
            os.write(master, b"\x00\x13garbage")
            os.write(master, pusher.frames("0.1.25.9.0.255", 44, DataType.UINT8, hdlc=True)[0])
            os.write(master, pusher.frames("0.0.25.9.0.255", 1 << alarm_bit("CLOCK_INVALID"), DataType.UINT32,
                                           hdlc=True)[0])
            await wait_for(lambda: len(outbox) >= 2, what="both HDLC pushes in the outbox")
            assert listener.stats.frames == 2
    finally:
        os.close(master)
        os.close(slave)
    kinds = [(e.event_type, e.detail["name"]) for _, e in queued(outbox)]
    assert kinds == [(DeviceEventType.TAMPER, "METER_COVER_REMOVED"), (DeviceEventType.METER_ALARM, "CLOCK_INVALID")]
    assert json.loads(outbox.after(0, limit=1)[0].payload)["source"] == "dlms-push"


async def test_a_busy_push_port_is_retried_and_metering_is_not_stopped(events_box, clock, caplog) -> None:
    _, events = events_box
    import socket

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    listener = PushListener(meters=[], sink=events.submit, port=port, clock=clock)
    task = asyncio.create_task(listener.run(), name="push-listener-under-test")
    try:
        await wait_for(lambda: any("cannot listen" in r.getMessage() for r in caplog.records), what="the refusal")
        assert not task.done() and not listener.listening.is_set()
        busy.close()
        await asyncio.wait_for(listener.listening.wait(), 20)
        assert listener.port == port
    finally:
        busy.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# --- ciphered pushes (general-glo-ciphering, a meter with HLS security) -------------------------

def _cipher() -> PushCipher:
    return PushCipher(system_title=SERVER_TITLE, block_cipher_key=BLOCK_KEY, authentication_key=AUTH_KEY)


@pytest.mark.parametrize("hdlc", [False, True])
def test_a_ciphered_push_opens_with_the_meters_keys_only(model: MeterModel, hdlc: bool) -> None:
    from gurux_dlms.enums.DataType import DataType

    pusher = MeterPusher(model=model, cipher=_cipher())
    before = model.invocation_counter
    [frame] = pusher.frames("0.1.25.9.0.255", 1, DataType.UINT8, hdlc=hdlc)
    assert model.invocation_counter > before  # never the same counter twice under one key
    apdu, address = frame_apdu(frame, hdlc=hdlc)
    parts = sealed(apdu)
    assert parts is not None and parts.system_title == SERVER_TITLE and parts.invocation_counter == before
    with pytest.raises(PushError, match="needs its meter's keys"):
        decode_apdu(apdu, address)
    notification = decode_apdu(unseal(parts, block_cipher_key=BLOCK_KEY, authentication_key=AUTH_KEY), address)
    assert notification.device_name == model.serial and notification.values[STANDARD_EVENT_CODE_OBIS] == 1
    for block, auth in ((bytes(16), AUTH_KEY), (BLOCK_KEY, bytes(16))):
        with pytest.raises(PushError, match="tag does not hold"):
            unseal(parts, block_cipher_key=block, authentication_key=auth)
    tampered = dataclasses.replace(parts, ciphertext=bytes([parts.ciphertext[0] ^ 1]) + parts.ciphertext[1:])
    with pytest.raises(PushError, match="tag does not hold"):
        unseal(tampered, block_cipher_key=BLOCK_KEY, authentication_key=AUTH_KEY)
    with pytest.raises(PushError, match="security control"):
        unseal(dataclasses.replace(parts, security_control=0x10), block_cipher_key=BLOCK_KEY,
               authentication_key=AUTH_KEY)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_bad_ciphered_apdus_raise_push_error_only(data: bytes) -> None:
    with contextlib.suppress(PushError):
        parts = sealed(b"\xdb" + data)
        assert parts is not None
        unseal(parts, block_cipher_key=BLOCK_KEY, authentication_key=AUTH_KEY)


async def test_an_hls_meter_pushes_ciphered_and_the_listener_opens_it(
        hls_meter: DlmsMeterSimulator, events_box, clock: ManualClock) -> None:
    outbox, events = events_box
    config = make_config(hls_meter, device_name=hls_meter.model.serial)
    assert config.security is SecurityMode.HLS_GMAC
    # A second meter at the same address with other keys: the listener finds whose keys open it.
    other = make_config(hls_meter, meter_id="meter-other", device_name="OTHER",
                        block_cipher_key=SecretStr(bytes(range(100, 116)).hex()))
    listener = PushListener(meters=[other, config], sink=events.submit, port=0, clock=clock)
    async with listening(listener):
        hls_meter.model.push_destination = f"127.0.0.1:{listener.port}"
        await hls_meter.pull_power()
        await hls_meter.restore_power()
        await hls_meter.pusher.open_cover()
        await wait_for(lambda: len(outbox) >= 4, timeout=20, what="the ciphered pushes' events in the outbox")
        # The same frames again (a replay, recorded off the wire): dropped by their counter.
        from gurux_dlms.enums.DataType import DataType

        hls_meter.model.invocation_counter -= 1
        replay = hls_meter.pusher.frames("0.1.25.9.0.255", 1, DataType.UINT8, hdlc=False)
        await MeterPusher._write_tcp(f"127.0.0.1:{listener.port}", replay)
        await wait_for(lambda: listener.stats.replayed == 1, timeout=20, what="the replay dropped")
    kinds = [e.event_type for _, e in queued(outbox)]
    assert kinds[:2] == [DeviceEventType.POWER_FAILURE, DeviceEventType.POWER_RESTORED]
    assert DeviceEventType.TAMPER in kinds and {e.device_id for _, e in queued(outbox)} == {METER}
    assert listener.stats.undecodable == 0 and hls_meter.pusher.failed == 0


async def test_a_ciphered_push_no_configured_key_opens_is_dropped(hls_meter: DlmsMeterSimulator, events_box,
                                                                  clock: ManualClock) -> None:
    outbox, events = events_box
    stranger = make_config(hls_meter, block_cipher_key=SecretStr(bytes(range(100, 116)).hex()))
    listener = PushListener(meters=[stranger], sink=events.submit, port=0, clock=clock)
    async with listening(listener):
        hls_meter.model.push_destination = f"127.0.0.1:{listener.port}"
        await hls_meter.pull_power()
        await wait_for(lambda: listener.stats.undecodable == 1, timeout=20, what="the push refused")
    assert len(outbox) == 0


async def test_after_a_key_change_pushes_open_with_the_new_keys(hls_meter: DlmsMeterSimulator, events_box,
                                                                clock: ManualClock) -> None:
    outbox, events = events_box
    config = make_config(hls_meter, device_name=hls_meter.model.serial)
    new_key = bytes(range(200, 216))
    pending = make_config(hls_meter, device_name=hls_meter.model.serial, block_cipher_key=SecretStr(new_key.hex()))
    # As a concentrator gives them: the adapter's active keys first, then a change's pending ones.
    listener = PushListener(meters=[config], sink=events.submit, port=0, clock=clock,
                            keys_of=lambda _meter: [config, pending])
    async with listening(listener):
        hls_meter.model.push_destination = f"127.0.0.1:{listener.port}"
        await hls_meter.pull_power()
        hls_meter._take_keys({"block_cipher_key": new_key})  # global_key_transfer, as the meter takes it
        await hls_meter.restore_power()
        await wait_for(lambda: len(outbox) >= 2, timeout=20, what="both pushes, before and after the change")
    assert [e.event_type for _, e in queued(outbox)] == [DeviceEventType.POWER_FAILURE, DeviceEventType.POWER_RESTORED]
    assert listener.stats.undecodable == 0
