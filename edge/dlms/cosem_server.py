"""One association's DLMS/COSEM server logic for the simulator (a gurux secure server).

Pure with respect to I/O: it takes a received WRAPPER or HDLC frame and returns the reply
bytes. The asyncio side lives in :mod:`edge.dlms.simulator` (TCP) and
:mod:`edge.dlms.serial_simulator` (HDLC). One instance serves one TCP connection or serial line;
all instances of a simulator share one :class:`MeterModel` and one :class:`InvocationGuard`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edge.dlms import gurux_fixes

gurux_fixes.apply()

from gurux_dlms.ConnectionState import ConnectionState  # noqa: E402
from gurux_dlms.enums.AccessMode import AccessMode  # noqa: E402
from gurux_dlms.enums.DataType import DataType  # noqa: E402
from gurux_dlms.enums.Authentication import Authentication  # noqa: E402
from gurux_dlms.enums.InterfaceType import InterfaceType  # noqa: E402
from gurux_dlms.enums.MethodAccessMode import MethodAccessMode  # noqa: E402
from gurux_dlms.enums.ObjectType import ObjectType  # noqa: E402
from gurux_dlms.enums.Security import Security  # noqa: E402
from gurux_dlms.enums.SourceDiagnostic import SourceDiagnostic  # noqa: E402
from gurux_dlms.GXServerReply import GXServerReply  # noqa: E402
from gurux_dlms.objects.enums.AssociationStatus import AssociationStatus  # noqa: E402
from gurux_dlms.objects.GXDLMSAssociationLogicalName import GXDLMSAssociationLogicalName  # noqa: E402
from gurux_dlms.secure.GXDLMSSecureServer import GXDLMSSecureServer  # noqa: E402

from edge.dlms.cosem_objects import (  # noqa: E402
    ALARM_FILTER_OBIS,
    ALARM_REGISTER_2_OBIS,
    CLOCK_OBIS,
    DEVICE_NAME_OBIS,
    DISCONNECT_LOG_OBIS,
    FRAUD_LOG_OBIS,
    LOAD_PROFILE_2_OBIS,
    POWER_FAILURE_LOG_OBIS,
    SAP_ASSIGNMENT_OBIS,
    ModelAlarmRegister,
    ModelClock,
    ModelDisconnectControl,
    ModelEventCode,
    ModelEventLog,
    ModelLoadProfile,
    ModelRegister,
    ModelValue,
    device_name,
    sap_assignment,
)
from edge.dlms.config import SecurityMode  # noqa: E402
from edge.dlms.cosem_schedule import CLOSE_SCHEDULE_OBIS, OPEN_SCHEDULE_OBIS, ModelActionSchedule  # noqa: E402
from edge.dlms.pq_objects import power_quality_objects  # noqa: E402
from devices.profiles.power_quality import PowerQualitySpec  # noqa: E402
from edge.dlms.image_block import (  # noqa: E402
    GENERAL_GLO_CIPHERING,
    GLO_ACTION_REQUEST,
    GLO_ACTION_RESPONSE,
    ACTION_REQUEST,
    ApduError,
    GloCipher,
    action_response,
    parse_block_request,
    wrapper_frame,
)
from edge.dlms.image_objects import ModelFirmwareVersion, ModelImageTransfer, block_result  # noqa: E402
from edge.dlms.meter_model import ENERGY_OBIS, REGISTERS, MeterModel  # noqa: E402
from edge.dlms.security_setup import ModelSecuritySetup  # noqa: E402
from edge.dlms.sim_push import ModelPushSetup, push_setup_objects  # noqa: E402

logger = logging.getLogger(__name__)

ASSOCIATION_OBIS = "0.0.40.0.0.255"
# What the public client may read: who the meter is and what time it is (as in IDIS).
PUBLIC_OBJECTS = frozenset({ASSOCIATION_OBIS, SAP_ASSIGNMENT_OBIS, DEVICE_NAME_OBIS, CLOCK_OBIS})
# DLMS unit enumeration (IEC 62056-62): the units the meter's registers use.
UNITS = {"Wh": 30, "W": 27, "V": 35, "A": 33}
# AARQ (0x60) user-information (0xBE) carries a glo-initiateRequest (0x21) when ciphered.
_AARQ = 0x60
_USER_INFORMATION = 0xBE
_GLO_INITIATE_REQUEST = 0x21
# general-glo-ciphering and general-ded-ciphering APDU tags.
_GENERAL_CIPHERING = (0xDB, 0xDC)
# An HDLC information frame carries the APDU after the LLC header of a request.
_LLC_REQUEST = b"\xe6\xe6\x00"
_HDLC_TRAILER = 3  # FCS(2) + closing flag
# What an image block request arrives as: plain, glo-action-request, general-glo-ciphering.
_BLOCK_TAGS = frozenset({ACTION_REQUEST, GLO_ACTION_REQUEST, GENERAL_GLO_CIPHERING})


# IDIS client SAPs: the public client (no security, reads only what identifies the meter) and
# the management client (the meter's configured security, every object).
PUBLIC_CLIENT = 16
MANAGEMENT_CLIENT = 1


@dataclass(frozen=True, repr=False)
class ClientAccess:
    """One client SAP the meter accepts: its security and, for LLS, its own password."""

    address: int
    mode: SecurityMode
    password: bytes | None = None  # None: the meter's password (ServerSecurity.password)
    # The public client reads only PUBLIC_OBJECTS; any other client, even with no security, all.
    public: bool = False

    def __repr__(self) -> str:
        return f"{self.address}:{self.mode}"


@dataclass(frozen=True, repr=False)
class ServerSecurity:
    """What the meter accepts: its clients (address -> security), their secrets, its address.

    ``client_address`` gets ``mode`` (the management client); ``public_client`` (16 by default,
    None for none) gets no security and reads only the public objects; ``clients`` adds others.
    """

    mode: SecurityMode = SecurityMode.LLS
    password: bytes = b"12345678"
    block_cipher_key: bytes = bytes(range(16))
    authentication_key: bytes = bytes(range(16, 32))
    # The master key (KEK) that wraps new keys in a key change (global_key_transfer).
    master_key: bytes = bytes(range(32, 48))
    system_title: bytes = b"GRW00001"
    client_address: int = MANAGEMENT_CLIENT
    server_address: int = 1
    public_client: int | None = PUBLIC_CLIENT
    clients: tuple[ClientAccess, ...] = ()

    def access(self) -> dict[int, ClientAccess]:
        """Every client address the meter answers, with its access."""
        table = {self.client_address: ClientAccess(self.client_address, self.mode)}
        if self.public_client is not None and self.public_client != self.client_address:
            table[self.public_client] = ClientAccess(self.public_client, SecurityMode.NONE, public=True)
        table.update({client.address: client for client in self.clients})
        return table

    def password_of(self, client: ClientAccess) -> bytes:
        return client.password if client.password is not None else self.password

    def __repr__(self) -> str:  # secrets never reach a log line
        clients = ", ".join(repr(c) for c in self.access().values())
        return f"ServerSecurity(clients=[{clients}], server={self.server_address})"


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


def meter_objects(model: MeterModel, *, meter_name: str) -> list[Any]:
    """The IDIS / DSMR meter's COSEM objects (besides the association, SAP assignment and name)."""
    clock = ModelClock(model)
    registers = {obis: ModelRegister(model, obis, scaler=10.0 ** exponent, unit=UNITS[unit])
                 for obis, (exponent, unit) in REGISTERS.items()}
    energy = [registers[obis] for obis in ENERGY_OBIS]
    event_code = ModelEventCode(model)
    fraud_code = ModelValue("0.0.96.11.1.255", lambda: model.fraud_events[-1][1] if model.fraud_events else 0,
                            DataType.UINT8)
    disconnect_code = ModelValue("0.0.96.11.2.255",
                                 lambda: model.disconnect_events[-1][1] if model.disconnect_events else 0,
                                 DataType.UINT8)
    failure_duration = ModelValue("0.0.96.7.19.255",
                                  lambda: model.power_failures[-1][1] if model.power_failures else 0, DataType.UINT32)
    return [
        clock, *registers.values(),
        ModelLoadProfile(model, clock=clock, registers=energy),
        ModelLoadProfile(model, clock=clock, registers=energy, obis=LOAD_PROFILE_2_OBIS),
        ModelDisconnectControl(model),
        ModelActionSchedule(model, OPEN_SCHEDULE_OBIS, closes=False),
        ModelActionSchedule(model, CLOSE_SCHEDULE_OBIS, closes=True),
        ModelAlarmRegister(model),
        ModelAlarmRegister(model, ALARM_REGISTER_2_OBIS, "alarm_bits_2"),
        ModelAlarmRegister(model, ALARM_FILTER_OBIS, "alarm_filter"),
        event_code, fraud_code, disconnect_code, failure_duration,
        ModelEventLog(model, clock=clock, event_code=event_code),
        ModelEventLog(model, clock=clock, event_code=fraud_code, obis=FRAUD_LOG_OBIS, entries="fraud_events"),
        ModelEventLog(model, clock=clock, event_code=disconnect_code, obis=DISCONNECT_LOG_OBIS,
                      entries="disconnect_events"),
        ModelEventLog(model, clock=clock, event_code=failure_duration, obis=POWER_FAILURE_LOG_OBIS,
                      entries="power_failures", value_type=DataType.UINT32),
        ModelImageTransfer(model.firmware, meter_name=meter_name),
        ModelFirmwareVersion(model.firmware),
    ]


class CosemServer(GXDLMSSecureServer):
    """Gurux LN server (WRAPPER or HDLC) serving the simulated meter's objects for one connection."""

    def __init__(self, *, model: MeterModel, security: ServerSecurity, guard: InvocationGuard,
                 meter_name: str, hdlc: bool = False, power_quality: PowerQualitySpec | None = None,
                 on_keys: Callable[[dict[str, bytes]], None] | None = None) -> None:
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
        self._association = GXDLMSAssociationLogicalName(ASSOCIATION_OBIS)
        self._client = security.access()[security.client_address]
        self._authorise(self._client)
        for item in [self._association, sap_assignment(security.server_address, model.serial),
                     device_name(model.serial), *meter_objects(model, meter_name=meter_name),
                     *push_setup_objects(model)]:
            self.items.append(item)
        if on_keys is not None:
            self.items.append(ModelSecuritySetup(master_key=security.master_key, system_title=security.system_title,
                                                 on_keys=on_keys))
        if power_quality is not None:
            served = {item.logicalName for item in self.items}
            clock = next(item for item in self.items if item.logicalName == CLOCK_OBIS)
            for item in power_quality_objects(model, power_quality, clock=clock, served=served):
                self.items.append(item)
        self.initialize()
        self._image = next(item for item in self.items if isinstance(item, ModelImageTransfer))
        self._image_obis = bytes(int(part) for part in self._image.logicalName.split("."))
        self._block_cipher: GloCipher | None = None
        # Counters for benches: blocks answered by the hand-built path and by gurux's.
        self.fast_blocks = 0

    def handle_frame(self, frame: bytes) -> bytes | None:
        """Feed one complete WRAPPER or HDLC frame; return the reply frame (None: nothing to send)."""
        apdu = self._apdu(frame)
        if apdu and apdu[0] in _BLOCK_TAGS and not self._hdlc:
            reply = self._image_block(frame, apdu)
            if reply is not None:
                return reply
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

    def _image_block(self, frame: bytes, apdu: bytes) -> bytes | None:
        """image_block_transfer read and answered without gurux (see edge.dlms.image_block).

        Only on a complete association of a client with method access, addressed as the
        association is, protected as the association is, for this meter's image transfer
        object; anything else returns None and goes through gurux as before (which answers
        or refuses it as it always has).
        """
        settings = self.settings
        if not (settings.connected & ConnectionState.DLMS) or self._client.public \
                or self._association.associationStatus != AssociationStatus.ASSOCIATED \
                or int.from_bytes(frame[2:4], "big") != settings.clientAddress \
                or int.from_bytes(frame[4:6], "big") != settings.serverAddress:
            return None
        cipher = settings.cipher
        ciphered = cipher is not None and cipher.security != Security.NONE
        tag = apdu[0]
        if ciphered != (tag != ACTION_REQUEST):
            return None
        glo = None
        if ciphered:
            if cipher.dedicatedKey or int(cipher.securitySuite) != 0:
                return None
            glo = self._glo_cipher(cipher)
            try:
                _, _, apdu = glo.unprotect(apdu, peer_title=bytes(settings.sourceSystemTitle or b""))
            except (ApduError, IndexError, ValueError):
                return None  # gurux answers what it answers to an APDU it cannot decipher
        request = parse_block_request(apdu)
        if request is None or request.obis != self._image_obis:
            return None
        settings.updateInvokeId(request.invoke)
        answer = action_response(invoke=request.invoke, result=block_result(
            self._image.firmware.block(request.number, request.block)))
        if glo is not None:
            reply_tag = GLO_ACTION_RESPONSE if tag == GLO_ACTION_REQUEST else GENERAL_GLO_CIPHERING
            answer = glo.protect(answer, tag=reply_tag, invocation_counter=int(cipher.invocationCounter))
            cipher.invocationCounter = cipher.invocationCounter + 1
            self._model.invocation_counter = max(self._model.invocation_counter, cipher.invocationCounter)
        self.fast_blocks += 1
        return wrapper_frame(source=settings.serverAddress, destination=settings.clientAddress, apdu=answer)

    def _glo_cipher(self, cipher: Any) -> GloCipher:
        current = (int(cipher.security), bytes(cipher.systemTitle), bytes(cipher.blockCipherKey),
                   bytes(cipher.authenticationKey))
        glo = self._block_cipher
        if glo is None or (glo.security, glo.system_title, glo.block_cipher_key, glo.authentication_key) != current:
            glo = self._block_cipher = GloCipher(security=current[0], system_title=current[1],
                                                 block_cipher_key=current[2], authentication_key=current[3])
        return glo

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
    def _authorise(self, client: ClientAccess) -> None:
        """Make the association object the one for ``client`` (mechanism, secret, SAP)."""
        self._client = client
        self._association.authenticationMechanismName.mechanismId = Authentication(client.mode.authentication)
        self._association.secret = bytearray(self._security.password_of(client))
        self._association.clientSAP = client.address

    def isTarget(self, serverAddress: int, clientAddress: int) -> bool:  # noqa: N802, N803
        client = self._security.access().get(clientAddress)
        if serverAddress != self._security.server_address or client is None:
            logger.info("meter %s: no client SAP %s at server address %s", self._meter_name, clientAddress,
                        serverAddress)
            return False
        self._authorise(client)
        return True

    def onValidateAuthentication(self, authentication: Any, password: Any) -> int:  # noqa: N802
        expected = self._client.mode
        if int(authentication) != expected.authentication:
            logger.info("meter %s: refused authentication %s for client %d", self._meter_name, authentication,
                        self._client.address)
            return SourceDiagnostic.NOT_RECOGNISED
        if expected is SecurityMode.LLS and bytes(password or b"") != self._security.password_of(self._client):
            logger.info("meter %s: wrong LLS password", self._meter_name)
            return SourceDiagnostic.AUTHENTICATION_FAILURE
        if expected is SecurityMode.HLS_GMAC:
            if self.settings.cipher.security != Security.AUTHENTICATION_ENCRYPTION or self._replay:
                return SourceDiagnostic.AUTHENTICATION_FAILURE
        return SourceDiagnostic.NONE

    def onGetAttributeAccess(self, arg: Any) -> int:  # noqa: N802
        if self._client.public:
            return AccessMode.READ if arg.target.logicalName in PUBLIC_OBJECTS else AccessMode.NO_ACCESS
        if arg.target.logicalName == CLOCK_OBIS and arg.index == 2:
            return AccessMode.READ_WRITE
        if arg.target.objectType == ObjectType.ACTION_SCHEDULE and arg.index in (2, 3, 4):
            return AccessMode.READ_WRITE
        if isinstance(arg.target, ModelPushSetup) and arg.index == 3:
            return AccessMode.READ_WRITE
        return AccessMode.READ

    def onGetMethodAccess(self, arg: Any) -> int:  # noqa: N802
        if arg.target.objectType == ObjectType.ASSOCIATION_LOGICAL_NAME and arg.index == 1:
            return MethodAccessMode.ACCESS
        if not self.settings.connected or self._client.public:
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
