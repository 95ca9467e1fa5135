"""DLMS pushes from meters, decoded and turned into device events (pure: bytes in, events out).

A meter pushes two kinds of APDU, on TCP (WRAPPER) or a serial line (HDLC):
- a **data notification** (tag 0x0F), sent by a push setup object (COSEM class 40): a structure
  of the values its push object list names. By convention (DSMR, IDIS) the first element is the
  push setup's own logical name and the second the meter's logical device name, so a receiver
  knows which layout follows and from which meter; :data:`PUSH_LAYOUTS` lists the layouts
  Gridwire knows (the simulator pushes exactly these);
- an **event notification** (tag 0xC2): one attribute of one object (class, OBIS, attribute) and
  its value, with no device name; the listener tells the meter by its link.

Values become :class:`~broker.schemas.DeviceEvent`s by :func:`notification_events`: event codes
(power failure and restore, cover opened, disconnector switched) and alarm register bits
(fraud attempt is a tamper; the others are meter alarms).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from edge.dlms import gurux_fixes

gurux_fixes.apply()

from gurux_dlms.enums.DataType import DataType  # noqa: E402
from gurux_dlms.GXByteBuffer import GXByteBuffer  # noqa: E402
from gurux_dlms.GXDLMSClient import GXDLMSClient  # noqa: E402
from gurux_dlms.internal._GXCommon import _GXCommon  # noqa: E402
from gurux_dlms.internal._GXDataInfo import _GXDataInfo  # noqa: E402
from gurux_dlms.GXDLMSSettings import GXDLMSSettings  # noqa: E402

from broker.schemas import DeviceEvent, DeviceEventType, EventSource  # noqa: E402
from edge.dlms.alarms import ALARM_REGISTER_OBIS, STANDARD_EVENT_CODE_OBIS, decode_alarms, event_name  # noqa: E402
from edge.dlms.cosem_objects import DEVICE_NAME_OBIS, DISCONNECT_OBIS, from_gx_datetime  # noqa: E402
from edge.dlms.errors import DlmsProtocolError  # noqa: E402

# Push setup objects (class 40) of the simulator and of DSMR-like meters.
ALARM_PUSH_OBIS = "0.0.25.9.0.255"
EVENT_PUSH_OBIS = "0.1.25.9.0.255"
# Event code objects of the meter's logs: standard, fraud detection, disconnector control.
FRAUD_EVENT_CODE_OBIS = "0.0.96.11.1.255"
DISCONNECTOR_EVENT_CODE_OBIS = "0.0.96.11.2.255"
EVENT_CODE_OBIS = frozenset({STANDARD_EVENT_CODE_OBIS, FRAUD_EVENT_CODE_OBIS, DISCONNECTOR_EVENT_CODE_OBIS})

# What follows the push setup's logical name in a data notification, by push setup.
PUSH_LAYOUTS: dict[str, tuple[str, ...]] = {
    ALARM_PUSH_OBIS: (DEVICE_NAME_OBIS, ALARM_REGISTER_OBIS),
    EVENT_PUSH_OBIS: (DEVICE_NAME_OBIS, STANDARD_EVENT_CODE_OBIS),
}

# Event codes that name an event type of their own (DSMR 5 P3 codes); others are METER_EVENT.
CODE_EVENTS: dict[int, DeviceEventType] = {
    1: DeviceEventType.POWER_FAILURE,
    2: DeviceEventType.POWER_RESTORED,
    40: DeviceEventType.TAMPER,  # terminal cover removed
    42: DeviceEventType.TAMPER,  # strong DC field detected
    44: DeviceEventType.TAMPER,  # meter cover removed
    60: DeviceEventType.DISCONNECTOR_OPENED,  # manual disconnection
    61: DeviceEventType.DISCONNECTOR_CLOSED,  # manual reconnection
    62: DeviceEventType.DISCONNECTOR_OPENED,  # remote disconnection
    63: DeviceEventType.DISCONNECTOR_CLOSED,  # remote reconnection
    64: DeviceEventType.DISCONNECTOR_OPENED,  # local disconnection
}
TAMPER_ALARM_BITS = frozenset({"FRAUD_ATTEMPT"})

DATA_NOTIFICATION = 0x0F
EVENT_NOTIFICATION = 0xC2
_WRAPPER_HEADER = 8
_HDLC_FLAG = 0x7E
_LLC = (b"\xe6\xe7\x00", b"\xe6\xe6\x00")


class PushError(DlmsProtocolError):
    """A pushed frame that is not a notification Gridwire can read (logged and dropped)."""


@dataclass(frozen=True)
class Notification:
    """One decoded push: when the meter says it happened, and the values it carried by OBIS."""

    kind: str  # "data" or "event"
    time: datetime | None
    values: dict[str, Any] = field(default_factory=dict)
    device_name: str | None = None
    push_setup: str | None = None
    # The HDLC source (the meter's upper, logical device address) when it came over HDLC.
    hdlc_address: int | None = None


def decode_frame(frame: bytes, *, hdlc: bool) -> Notification:
    """Decode one complete WRAPPER or HDLC frame holding a data or event notification."""
    address = None
    if hdlc:
        apdu, address = _hdlc_apdu(frame)
    else:
        if len(frame) <= _WRAPPER_HEADER:
            raise PushError("WRAPPER frame without an APDU")
        apdu = frame[_WRAPPER_HEADER:]
    if not apdu:
        raise PushError("empty APDU")
    if apdu[0] == DATA_NOTIFICATION:
        return _data_notification(apdu, address)
    if apdu[0] == EVENT_NOTIFICATION:
        return _event_notification(apdu, address)
    raise PushError(f"APDU tag 0x{apdu[0]:02X} is not a data or event notification")


def _hdlc_apdu(frame: bytes) -> tuple[bytes, int]:
    if len(frame) < 12 or frame[0] != _HDLC_FLAG or frame[-1] != _HDLC_FLAG:
        raise PushError("not an HDLC frame")
    pos = 3
    _, pos = _hdlc_address(frame, pos)  # destination: the client (concentrator)
    source, pos = _hdlc_address(frame, pos)
    pos += 1 + 2  # control, header check sequence
    info = frame[pos:-3]  # frame check sequence and closing flag
    for llc in _LLC:
        if info.startswith(llc):
            return info[len(llc):], source
    raise PushError("HDLC information field without an LLC header")


def _hdlc_address(frame: bytes, pos: int) -> tuple[int, int]:
    """An HDLC address (1, 2 or 4 bytes, the last with its low bit set); its upper address."""
    start = pos
    while pos < len(frame) and not frame[pos] & 1:
        pos += 1
    raw = frame[start:pos + 1]
    if len(raw) not in (1, 2, 4):
        raise PushError("malformed HDLC address")
    half = raw[: max(1, len(raw) // 2)]
    upper = 0
    for byte in half:
        upper = (upper << 7) | (byte >> 1)
    return upper, pos + 1


def _data_notification(apdu: bytes, address: int | None) -> Notification:
    pos = 5  # tag, long-invoke-id-and-priority
    moment, pos = _optional_time(apdu, pos)
    body = _decode(apdu[pos:])
    if not isinstance(body, list) or not body:
        raise PushError("data notification body is not a structure")
    push_ln = _logical_name(body[0])
    layout = PUSH_LAYOUTS.get(push_ln) if push_ln else None
    if layout is None:
        raise PushError(f"data notification from unknown push setup {push_ln!r}")
    if len(body) - 1 != len(layout):
        raise PushError(f"push setup {push_ln} carried {len(body) - 1} values; its layout has {len(layout)}")
    values = dict(zip(layout, body[1:], strict=True))
    name = values.get(DEVICE_NAME_OBIS)
    if isinstance(name, (bytes, bytearray)):
        name = bytes(name).decode("ascii", "replace")
    return Notification(kind="data", time=moment, values=values, device_name=name, push_setup=push_ln,
                        hdlc_address=address)


def _event_notification(apdu: bytes, address: int | None) -> Notification:
    moment, pos = _optional_time(apdu, 1)
    if len(apdu) < pos + 9:
        raise PushError("event notification too short")
    obis = ".".join(str(b) for b in apdu[pos + 2:pos + 8])
    value = _decode(apdu[pos + 9:])
    return Notification(kind="event", time=moment, values={obis: value}, hdlc_address=address)


def _optional_time(apdu: bytes, pos: int) -> tuple[datetime | None, int]:
    """The optional date-time: absent (0x00), an octet string's length (0x0C) or a tagged one (0x09 0x0C)."""
    if pos >= len(apdu):
        raise PushError("notification cut short")
    first = apdu[pos]
    if first == 0x00:
        return None, pos + 1
    if first == DataType.OCTET_STRING and pos + 1 < len(apdu):
        pos += 1
        first = apdu[pos]
    if first != 12 or pos + 13 > len(apdu):
        raise PushError("notification date-time is not 12 bytes")
    raw = bytes(apdu[pos + 1:pos + 13])
    try:
        moment = from_gx_datetime(GXDLMSClient.changeType(bytearray(raw), DataType.DATETIME))
    except (ValueError, TypeError) as exc:
        raise PushError(f"unreadable notification date-time {raw.hex()}") from exc
    return moment, pos + 13


def _decode(data: bytes) -> Any:
    info = _GXDataInfo()
    try:
        return _GXCommon.getData(GXDLMSSettings(False, None), GXByteBuffer(bytearray(data)), info)
    except (ValueError, IndexError, TypeError) as exc:
        raise PushError(f"undecodable notification value: {exc}") from exc


def _logical_name(value: Any) -> str | None:
    if isinstance(value, (bytes, bytearray)) and len(value) == 6:
        return ".".join(str(b) for b in value)
    return None


# --- to events ---------------------------------------------------------------------------------


def notification_events(notification: Notification, meter_id: str, *, received_at: datetime) -> list[DeviceEvent]:
    """The device events one notification of ``meter_id`` carries (none for values of no interest)."""
    at = notification.time or received_at
    events: list[DeviceEvent] = []
    for obis, value in notification.values.items():
        if obis == ALARM_REGISTER_OBIS and isinstance(value, int):
            events += alarm_events(meter_id, value, at=at)
        elif obis in EVENT_CODE_OBIS and isinstance(value, int) and value:
            events.append(code_event(meter_id, value, at=at, log=obis))
        elif obis == DISCONNECT_OBIS and isinstance(value, bool):
            kind = DeviceEventType.DISCONNECTOR_CLOSED if value else DeviceEventType.DISCONNECTOR_OPENED
            events.append(DeviceEvent.make(meter_id, kind, at, source=EventSource.DLMS_PUSH, outputState=value))
    return events


def code_event(meter_id: str, code: int, *, at: datetime, log: str = STANDARD_EVENT_CODE_OBIS) -> DeviceEvent:
    """The event a logged event code stands for."""
    kind = CODE_EVENTS.get(code, DeviceEventType.METER_EVENT)
    return DeviceEvent.make(meter_id, kind, at, source=EventSource.DLMS_PUSH, key=str(code), code=code,
                            name=event_name(code), log=log)


def alarm_events(meter_id: str, register: int, *, at: datetime) -> list[DeviceEvent]:
    """One event per set bit of an alarm register value."""
    out = []
    for alarm in decode_alarms(register & 0xFFFFFFFF):
        kind = DeviceEventType.TAMPER if alarm["name"] in TAMPER_ALARM_BITS else DeviceEventType.METER_ALARM
        out.append(DeviceEvent.make(meter_id, kind, at, source=EventSource.DLMS_PUSH, key=f"bit{alarm['bit']}",
                                    bit=alarm["bit"], name=alarm["name"]))
    return out
