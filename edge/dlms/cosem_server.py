"""One association's DLMS/COSEM server logic for the simulator (a gurux secure server).

Pure with respect to I/O: it takes a received WRAPPER or HDLC frame and returns the reply
bytes. The asyncio side lives in :mod:`edge.dlms.simulator` (TCP) and
:mod:`edge.dlms.serial_simulator` (HDLC). One instance serves one TCP connection or serial line;
all instances of a simulator share one :class:`MeterModel` and one :class:`InvocationGuard`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from edge.dlms import gurux_fixes

gurux_fixes.apply()

from gurux_dlms.enums.AccessMode import AccessMode  # noqa: E402
from gurux_dlms.enums.Authentication import Authentication  # noqa: E402
from gurux_dlms.enums.InterfaceType import InterfaceType  # noqa: E402
from gurux_dlms.enums.MethodAccessMode import MethodAccessMode  # noqa: E402
from gurux_dlms.enums.ObjectType import ObjectType  # noqa: E402
from gurux_dlms.enums.Security import Security  # noqa: E402
from gurux_dlms.enums.SourceDiagnostic import SourceDiagnostic  # noqa: E402
from gurux_dlms.GXServerReply import GXServerReply  # noqa: E402
from gurux_dlms.objects.GXDLMSAssociationLogicalName import GXDLMSAssociationLogicalName  # noqa: E402
from gurux_dlms.secure.GXDLMSSecureServer import GXDLMSSecureServer  # noqa: E402

from edge.dlms.cosem_objects import (  # noqa: E402
    CLOCK_OBIS,
    UNIT_V,
    UNIT_W,
    UNIT_WH,
    ModelAlarmRegister,
    ModelClock,
    ModelDisconnectControl,
    ModelEventCode,
    ModelEventLog,
    ModelLoadProfile,
    ModelRegister,
    device_name,
)
from edge.dlms.config import SecurityMode  # noqa: E402
from edge.dlms.cosem_schedule import CLOSE_SCHEDULE_OBIS, OPEN_SCHEDULE_OBIS, ModelActionSchedule  # noqa: E402
from edge.dlms.image_objects import ModelFirmwareVersion, ModelImageTransfer  # noqa: E402
from edge.dlms.meter_model import ENERGY_OBIS, POWER_OBIS, VOLTAGE_OBIS, MeterModel  # noqa: E402

logger = logging.getLogger(__name__)

ASSOCIATION_OBIS = "0.0.40.0.0.255"
# AARQ (0x60) user-information (0xBE) carries a glo-initiateRequest (0x21) when ciphered.
_AARQ = 0x60
_USER_INFORMATION = 0xBE
_GLO_INITIATE_REQUEST = 0x21
# general-glo-ciphering and general-ded-ciphering APDU tags.
_GENERAL_CIPHERING = (0xDB, 0xDC)
# An HDLC information frame carries the APDU after the LLC header of a request.
_LLC_REQUEST = b"\xe6\xe6\x00"
_HDLC_TRAILER = 3  # FCS(2) + closing flag


@dataclass(frozen=True, repr=False)
class ServerSecurity:
    """What the meter accepts: one client address, one security level, its secrets."""

    mode: SecurityMode = SecurityMode.LLS
    password: bytes = b"12345678"
    block_cipher_key: bytes = bytes(range(16))
    authentication_key: bytes = bytes(range(16, 32))
    system_title: bytes = b"GRW00001"
    client_address: int = 1
    server_address: int = 1

    def __repr__(self) -> str:  # secrets never reach a log line
        return f"ServerSecurity(mode={self.mode!s}, client={self.client_address}, server={self.server_address})"


class InvocationGuard:
    """Remembers the highest invocation counter a client used, to refuse replays (as meters do)."""

    def __init__(self) -> None:
        self.last_seen: int | None = None

    def accept(self, counter: int) -> bool:
        if self.last_seen is not None and counter <= self.last_seen:
            return False
        self.last_seen = counter
        return True


def _ber_length(data: bytes, pos: int) -> tuple[int, int]:
    first = data[pos]
    if first < 0x80:
        return first, pos + 1
    count = first & 0x7F
    return int.from_bytes(data[pos + 1:pos + 1 + count], "big"), pos + 1 + count


def aarq_invocation_counter(apdu: bytes) -> int | None:
    """The client's invocation counter from a ciphered AARQ, or None if it carries none."""
    try:
        if not apdu or apdu[0] != _AARQ:
            return None
        length, pos = _ber_length(apdu, 1)
        end = min(len(apdu), pos + length)
        while pos < end:
            tag = apdu[pos]
            length, body = _ber_length(apdu, pos + 1)
            if tag == _USER_INFORMATION:
                # user-information: [0x04 len] glo-initiateRequest: [0x21 len SC IC(4) ...]
                _, inner = _ber_length(apdu, body + 1)
                if apdu[inner] != _GLO_INITIATE_REQUEST:
                    return None
                _, payload = _ber_length(apdu, inner + 1)
                return int.from_bytes(apdu[payload + 1:payload + 5], "big")
            pos = body + length
    except IndexError:
        return None
    return None


class CosemServer(GXDLMSSecureServer):
    """Gurux LN server (WRAPPER or HDLC) serving the simulated meter's objects for one connection."""

    def __init__(self, *, model: MeterModel, security: ServerSecurity, guard: InvocationGuard,
                 meter_name: str, hdlc: bool = False) -> None:
        super().__init__(True, InterfaceType.HDLC if hdlc else InterfaceType.WRAPPER)
        self._hdlc = hdlc
        self._security = security
        self._guard = guard
        self._meter_name = meter_name
        self._model = model
        self._replay = False
        cipher = self.settings.cipher
        cipher.systemTitle = bytearray(security.system_title)
        cipher.blockCipherKey = bytearray(security.block_cipher_key)
        cipher.authenticationKey = bytearray(security.authentication_key)
        association = GXDLMSAssociationLogicalName(ASSOCIATION_OBIS)
        association.authenticationMechanismName.mechanismId = Authentication(security.mode.authentication)
        association.secret = bytearray(security.password)
        association.clientSAP = security.client_address
        clock = ModelClock(model)
        energy = [ModelRegister(model, obis, scaler=1, unit=UNIT_WH) for obis in ENERGY_OBIS]
        event_code = ModelEventCode(model)
        for item in [
            association,
            device_name(model.serial),
            clock,
            *energy,
            ModelRegister(model, POWER_OBIS, scaler=1, unit=UNIT_W),
            ModelRegister(model, VOLTAGE_OBIS, scaler=0.1, unit=UNIT_V),
            ModelLoadProfile(model, clock=clock, registers=energy),
            ModelDisconnectControl(model),
            ModelActionSchedule(model, OPEN_SCHEDULE_OBIS, closes=False),
            ModelActionSchedule(model, CLOSE_SCHEDULE_OBIS, closes=True),
            ModelAlarmRegister(model),
            event_code,
            ModelEventLog(model, clock=clock, event_code=event_code),
            ModelImageTransfer(model.firmware, meter_name=meter_name),
            ModelFirmwareVersion(model.firmware),
        ]:
            self.items.append(item)
        self.initialize()

    def handle_frame(self, frame: bytes) -> bytes | None:
        """Feed one complete WRAPPER or HDLC frame; return the reply frame (None: nothing to send)."""
        apdu = self._apdu(frame)
        counter = aarq_invocation_counter(apdu)
        self._replay = counter is not None and not self._guard.accept(counter)
        if self._replay:
            logger.warning("meter %s: refused AARQ replaying invocation counter %d", self._meter_name, counter)
        if apdu:
            setattr(self.settings, gurux_fixes.GENERAL_CIPHERING_FLAG, apdu[0] in _GENERAL_CIPHERING)
        reply = GXServerReply(bytearray(frame))
        self.handleRequest(reply)
        self._model.invocation_counter = max(self._model.invocation_counter, self.settings.cipher.invocationCounter)
        return bytes(reply.reply) if reply.reply else None

    def reset(self, connected: bool = False) -> None:
        # gurux zeroes its cipher's invocation counter on every association (an AARQ on
        # WRAPPER, a SNRM or DISC on HDLC); the meter's own counter goes on rising instead.
        super().reset(connected)
        if getattr(self, "_model", None) is not None:
            self.settings.cipher.invocationCounter = self._model.invocation_counter

    def _apdu(self, frame: bytes) -> bytes:
        if not self._hdlc:
            return frame[8:]
        start = frame.find(_LLC_REQUEST)
        return frame[start + len(_LLC_REQUEST):-_HDLC_TRAILER] if start >= 0 else b""

    # --- gurux callbacks ------------------------------------------------------------------
    def isTarget(self, serverAddress: int, clientAddress: int) -> bool:  # noqa: N802, N803
        return serverAddress == self._security.server_address and clientAddress == self._security.client_address

    def onValidateAuthentication(self, authentication: Any, password: Any) -> int:  # noqa: N802
        expected = self._security.mode
        if int(authentication) != expected.authentication:
            logger.info("meter %s: refused authentication %s", self._meter_name, authentication)
            return SourceDiagnostic.NOT_RECOGNISED
        if expected is SecurityMode.LLS and bytes(password or b"") != self._security.password:
            logger.info("meter %s: wrong LLS password", self._meter_name)
            return SourceDiagnostic.AUTHENTICATION_FAILURE
        if expected is SecurityMode.HLS_GMAC:
            if self.settings.cipher.security != Security.AUTHENTICATION_ENCRYPTION or self._replay:
                return SourceDiagnostic.AUTHENTICATION_FAILURE
        return SourceDiagnostic.NONE

    def onGetAttributeAccess(self, arg: Any) -> int:  # noqa: N802
        if arg.target.logicalName == CLOCK_OBIS and arg.index == 2:
            return AccessMode.READ_WRITE
        if arg.target.objectType == ObjectType.ACTION_SCHEDULE and arg.index in (2, 3, 4):
            return AccessMode.READ_WRITE
        return AccessMode.READ

    def onGetMethodAccess(self, arg: Any) -> int:  # noqa: N802
        if arg.target.objectType == ObjectType.ASSOCIATION_LOGICAL_NAME and arg.index == 1:
            return MethodAccessMode.ACCESS
        if not self.settings.connected:
            return MethodAccessMode.NO_ACCESS
        return MethodAccessMode.ACCESS

    def onFindObject(self, objectType: Any, sn: Any, ln: Any) -> None:  # noqa: N802, N803
        return None

    def onConnected(self, connectionInfo: Any) -> None:  # noqa: N802, N803
        logger.debug("meter %s: association established", self._meter_name)

    def onInvalidConnection(self, connectionInfo: Any) -> None:  # noqa: N802, N803
        logger.info("meter %s: invalid association attempt", self._meter_name)

    def onDisconnected(self, connectionInfo: Any) -> None:  # noqa: N802, N803
        logger.debug("meter %s: association released", self._meter_name)

    # The pre/post hooks have nothing to do: our objects compute their values in getValue.
    def onPreGet(self, args: Any = None) -> None:  # noqa: N802
        return None

    def onPostGet(self, args: Any = None) -> None:  # noqa: N802
        return None

    def onPreRead(self, args: Any = None) -> None:  # noqa: N802
        return None

    def onPostRead(self, args: Any = None) -> None:  # noqa: N802
        return None

    def onPreWrite(self, args: Any = None) -> None:  # noqa: N802
        return None

    def onPostWrite(self, args: Any = None) -> None:  # noqa: N802
        return None

    def onPreAction(self, args: Any = None) -> None:  # noqa: N802
        return None

    def onPostAction(self, args: Any = None) -> None:  # noqa: N802
        return None
