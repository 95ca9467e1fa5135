"""DLMS pushes from meters, decoded and turned into device events (pure: bytes in, events out).

A meter pushes two kinds of APDU, on TCP (WRAPPER) or a serial line (HDLC):
- a **data notification** (tag 0x0F), sent by a push setup object (COSEM class 40): a structure
  of the values its push object list names. By convention (DSMR, IDIS) the first element is the
  push setup's own logical name and the second the meter's logical device name, so a receiver
  knows which layout follows and from which meter; :data:`PUSH_LAYOUTS` lists the layouts
  Gridwire knows (the simulator pushes exactly these);
- an **event notification** (tag 0xC2): one attribute of one object (class, OBIS, attribute) and
  its value, with no device name; the listener tells the meter by its link.

Either may come ciphered, as a meter with HLS security sends it: a **general-glo-ciphering** APDU
(tag 0xDB) carrying the meter's system title and, authenticated and encrypted with its global
keys (AES-128-GCM, security suite 0, security control 0x30), the notification:
:func:`sealed` reads its parts, :func:`unseal` checks its tag with a meter's keys and returns the
plain notification.

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

from broker.lean import DeviceEvent, DeviceEventType, EventSource  # noqa: E402
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
GENERAL_GLO_CIPHERING = 0xDB
# Security control: authenticated and encrypted, security suite 0 (AES-128-GCM, 12-byte tag).
AUTHENTICATED_ENCRYPTED = 0x30
GCM_TAG_BYTES = 12
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


@dataclass(frozen=True)
class Sealed:
    """A general-glo-ciphering APDU's parts: whose (system title), how (security control), which
    (the sender's invocation counter), and the ciphertext with its authentication tag."""

    system_title: bytes
    security_control: int
    invocation_counter: int
    ciphertext: bytes
    tag: bytes


def frame_apdu(frame: bytes, *, hdlc: bool) -> tuple[bytes, int | None]:
    """The APDU of one complete WRAPPER or HDLC frame, and the HDLC source address (None on TCP)."""
    address = None
    if hdlc:
        apdu, address = _hdlc_apdu(frame)
    else:
        if len(frame) <= _WRAPPER_HEADER:
            raise PushError("WRAPPER frame without an APDU")
        apdu = frame[_WRAPPER_HEADER:]
    if not apdu:
        raise PushError("empty APDU")
    return apdu, address


def sealed(apdu: bytes) -> Sealed | None:
    """The parts of a general-glo-ciphering APDU, None for a plain one; PushError if malformed."""
    if apdu[0] != GENERAL_GLO_CIPHERING:
        return None
    if len(apdu) < 2 or apdu[1] != 8 or len(apdu) < 10:
        raise PushError("general-glo-ciphering without an 8-byte system title")
    title = apdu[2:10]
    length, pos = _axdr_length(apdu, 10)
    content = apdu[pos:pos + length]
    if len(content) != length or length < 5 + GCM_TAG_BYTES:
        raise PushError(f"general-glo-ciphering content of {len(content)} bytes, announced {length}")
    return Sealed(system_title=bytes(title), security_control=content[0],
                  invocation_counter=int.from_bytes(content[1:5], "big"),
                  ciphertext=bytes(content[5:-GCM_TAG_BYTES]), tag=bytes(content[-GCM_TAG_BYTES:]))


def unseal(parts: Sealed, *, block_cipher_key: bytes, authentication_key: bytes) -> bytes:
    """The plain APDU inside ``parts``, its tag checked with these keys; PushError if it does not hold."""
    if parts.security_control != AUTHENTICATED_ENCRYPTED:
        raise PushError(f"security control 0x{parts.security_control:02X} is not authenticated encryption "
                        f"with suite 0 (0x{AUTHENTICATED_ENCRYPTED:02X})")
    # cryptography loads with the first ciphered push, not with the concentrator (docs/FIRMWARE.md, "Memory").
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    nonce = parts.system_title + parts.invocation_counter.to_bytes(4, "big")
    decryptor = Cipher(algorithms.AES(block_cipher_key),
                       modes.GCM(nonce, parts.tag, min_tag_length=GCM_TAG_BYTES)).decryptor()
    decryptor.authenticate_additional_data(bytes([parts.security_control]) + authentication_key)
    try:
        plain = decryptor.update(parts.ciphertext) + decryptor.finalize()
    except InvalidTag:
        raise PushError("the authentication tag does not hold for these keys") from None
    if not plain:
        raise PushError("empty ciphered APDU")
    return plain


def _axdr_length(data: bytes, pos: int) -> tuple[int, int]:
    if pos >= len(data):
        raise PushError("APDU cut short before a length")
    first = data[pos]
    if first < 0x80:
        return first, pos + 1
    size = first & 0x7F
    if not 1 <= size <= 2 or pos + 1 + size > len(data):
        raise PushError("malformed A-XDR length")
    return int.from_bytes(data[pos + 1:pos + 1 + size], "big"), pos + 1 + size


def decode_frame(frame: bytes, *, hdlc: bool) -> Notification:
    """Decode one complete WRAPPER or HDLC frame holding a plain data or event notification."""
    return decode_apdu(*frame_apdu(frame, hdlc=hdlc))


def decode_apdu(apdu: bytes, address: int | None = None) -> Notification:
    """Decode a plain data or event notification APDU (``address``: the HDLC source, if any)."""
    if apdu[0] == GENERAL_GLO_CIPHERING:
        raise PushError("a ciphered notification: it needs its meter's keys (unseal)")
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
