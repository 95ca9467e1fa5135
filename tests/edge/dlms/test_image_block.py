"""The hand-built image_block_transfer (edge.dlms.image_block, BlockSender, the simulator's answer) against gurux."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from edge.dlms import DlmsMeterAdapter, DlmsMeterConfig, DlmsMeterSimulator, InvocationCounterStore, MeterModel
from edge.dlms import SecurityMode
from edge.dlms.block_sender import BlockSender
from edge.dlms.client import DlmsAssociation
from edge.dlms.cosem_server import CosemServer
from edge.dlms.image_block import (
    ApduError,
    GloCipher,
    block_request,
    parse_block_request,
)
from edge.dlms.image_transfer import IMAGE_TRANSFER_OBIS, ImageTransferClient
from edge.dlms.sim_firmware import build_sim_image
from tests.edge.dlms.conftest import AUTH_KEY, BLOCK_KEY, PASSWORD, server_security

from gurux_dlms.enums.Conformance import Conformance  # noqa: I001  (after edge.dlms applied the fixes)
from gurux_dlms.enums.DataType import DataType
from gurux_dlms.objects.GXDLMSImageTransfer import GXDLMSImageTransfer

BLOCK = bytes(range(256)) * 2
SERVER_TITLE = b"GRWSIM01"


def _link(mode: SecurityMode, *, serial: bool = False) -> DlmsAssociation:
    """An association object as after AARE (and HLS pass 3/4), without a socket: only its gurux client is used."""
    link_fields: dict[str, Any] = {"serial": "/dev/null-modem"} if serial else {"host": "127.0.0.1", "port": 4059}
    config = DlmsMeterConfig(meter_id="meter-0042", security=mode, password=SecretStr(PASSWORD),
                             block_cipher_key=SecretStr(BLOCK_KEY.hex()), authentication_key=SecretStr(AUTH_KEY.hex()),
                             profile="smr-5", **link_fields)
    link = DlmsAssociation(config=config)
    settings = link.client.settings
    settings.connected = settings.connected | 2  # ConnectionState.DLMS
    settings.sourceSystemTitle = bytearray(SERVER_TITLE)
    if mode is SecurityMode.HLS_GMAC:
        link.client.ciphering.invocationCounter = 41
    return link


def _gurux_frames(link: DlmsAssociation, number: int, block: bytes) -> list[bytes]:
    obj = GXDLMSImageTransfer(IMAGE_TRANSFER_OBIS)
    data = ImageTransferClient._block_data(number, block)
    return [bytes(frame) for frame in link.client.method(obj, 2, data, DataType.ARRAY)]


@pytest.mark.parametrize("serial", [False, True], ids=["wrapper", "hdlc"])
@pytest.mark.parametrize(("mode", "general"), [(SecurityMode.LLS, False), (SecurityMode.HLS_GMAC, False),
                                               (SecurityMode.HLS_GMAC, True)],
                         ids=["plain", "glo-ciphered", "general-glo-ciphered"])
def test_hand_built_block_request_is_the_one_gurux_builds(mode: SecurityMode, general: bool, serial: bool) -> None:
    ours, theirs = _link(mode, serial=serial), _link(mode, serial=serial)
    for link in (ours, theirs):
        settings = link.client.settings
        if general:
            settings.negotiatedConformance |= Conformance.GENERAL_PROTECTION
        else:
            settings.negotiatedConformance &= ~Conformance.GENERAL_PROTECTION
    sender = BlockSender.for_link(ours, obis=IMAGE_TRANSFER_OBIS, block_size=len(BLOCK))
    assert sender is not None
    for number, block in ((0, BLOCK), (70_000, BLOCK[:100]), (3, b"\x01")):  # block sizes across BER length forms
        expected = _gurux_frames(theirs, number, block)
        got = sender.frames(sender.request(number, block))
        assert got == expected
        if serial and len(block) == 512:
            assert len(got) > 4  # segmented into 128-byte HDLC frames, as gurux does
    if mode is SecurityMode.HLS_GMAC:
        assert ours.client.ciphering.invocationCounter == theirs.client.ciphering.invocationCounter == 44
        assert ours.client.settings.getNextSend(False) == theirs.client.settings.getNextSend(False)


def test_what_the_sender_does_not_build_is_left_to_gurux() -> None:
    link = _link(SecurityMode.HLS_GMAC)
    assert BlockSender.for_link(link, obis=IMAGE_TRANSFER_OBIS, block_size=512) is not None
    # A block that does not fit one PDU: gurux splits it (pblock or general-block-transfer).
    link.client.settings.maxPduSize = 512
    assert BlockSender.for_link(link, obis=IMAGE_TRANSFER_OBIS, block_size=512) is None
    link.client.settings.maxPduSize = 0xFFFF
    link.client.ciphering.dedicatedKey = bytearray(16)
    assert BlockSender.for_link(link, obis=IMAGE_TRANSFER_OBIS, block_size=512) is None


def test_ciphered_block_round_trips_and_a_wrong_key_or_title_is_refused() -> None:
    client = GloCipher(security=0x30, system_title=b"GWEDGE01", block_cipher_key=BLOCK_KEY,
                       authentication_key=AUTH_KEY)
    meter = GloCipher(security=0x30, system_title=SERVER_TITLE, block_cipher_key=BLOCK_KEY,
                      authentication_key=AUTH_KEY)
    apdu = block_request(invoke=0xC1, obis=bytes([0, 0, 44, 0, 0, 255]), number=9, block=BLOCK)
    for tag in (0xCB, 0xDB):
        ciphered = client.protect(apdu, tag=tag, invocation_counter=7)
        assert BLOCK not in ciphered
        got_tag, counter, plain = meter.unprotect(ciphered, peer_title=b"GWEDGE01")
        assert (got_tag, counter) == (tag, 7)
        request = parse_block_request(plain)
        assert request is not None and (request.number, request.block, request.invoke) == (9, BLOCK, 0xC1)
    ciphered = client.protect(apdu, tag=0xDB, invocation_counter=8)
    with pytest.raises(ApduError):
        meter.unprotect(ciphered, peer_title=b"SOMEONE1")
    other = GloCipher(security=0x30, system_title=SERVER_TITLE, block_cipher_key=bytes(16),
                      authentication_key=AUTH_KEY)
    with pytest.raises(ApduError):
        other.unprotect(ciphered, peer_title=b"GWEDGE01")
    tampered = bytearray(ciphered)
    tampered[-20] ^= 1
    with pytest.raises(ApduError):
        meter.unprotect(bytes(tampered), peer_title=b"GWEDGE01")


@pytest.mark.parametrize("mode", [SecurityMode.LLS, SecurityMode.HLS_GMAC])
async def test_the_simulator_answers_blocks_as_gurux_would(mode: SecurityMode, model: MeterModel, tmp_path: Path,
                                                          config_for: Callable[..., DlmsMeterConfig],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The same transfer twice, the meter answering by hand and then through gurux: the same block answers."""
    image = build_sim_image("2.1.0", bytes(2038))  # 4 blocks of 512: the only requests over 500 bytes
    answers: list[list[bytes]] = []
    original = CosemServer.handle_frame

    def recording(server: CosemServer, frame: bytes) -> bytes | None:
        reply = original(server, frame)
        if len(frame) > 500:
            answers[-1].append(reply or b"")
        return reply

    monkeypatch.setattr(CosemServer, "handle_frame", recording)
    for hand_built in (True, False):
        if not hand_built:
            monkeypatch.setattr(CosemServer, "_image_block", lambda *_: None)
        answers.append([])
        model.firmware.version, model.invocation_counter = "1.0.0", 100
        async with DlmsMeterSimulator(model=model, security=server_security(mode)) as sim:
            # A fresh counter store: the client starts each run from the same invocation counter.
            counters = InvocationCounterStore(tmp_path / f"counters-{hand_built}.sqlite")
            adapter = DlmsMeterAdapter(config=config_for(sim), counters=counters)
            await adapter.update_firmware(identifier=b"img", image=image)
            assert model.firmware.version == "2.1.0"
        assert sim.blocks_by_hand == (4 if hand_built else 0)
    assert len(answers[0]) == 4 and answers[0] == answers[1]


@pytest.mark.parametrize("security", [0x10, 0x20, 0x30])
def test_ciphering_matches_openssls_gcm_and_a_changed_tag_is_refused(security: int) -> None:
    """GloCipher against cryptography's GCM and CTR objects built the long way (a 12-byte tag):
    the same cipher text both ways, and a tag with one bit changed is refused."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    client = GloCipher(security=security, system_title=b"GWEDGE01", block_cipher_key=BLOCK_KEY,
                       authentication_key=AUTH_KEY)
    meter = GloCipher(security=security, system_title=SERVER_TITLE, block_cipher_key=BLOCK_KEY,
                      authentication_key=AUTH_KEY)
    apdu = block_request(invoke=0xC1, obis=bytes([0, 0, 44, 0, 0, 255]), number=3, block=BLOCK)
    ciphered = client.protect(apdu, tag=0xCB, invocation_counter=41)
    iv = b"GWEDGE01" + (41).to_bytes(4, "big")
    aad = bytes((security,)) + AUTH_KEY
    body = ciphered[-(len(apdu) + (0 if security == 0x20 else 12)):]
    if security == 0x20:
        ctr = Cipher(algorithms.AES(BLOCK_KEY), modes.CTR(iv + b"\x00\x00\x00\x02")).encryptor()
        assert body == ctr.update(apdu) + ctr.finalize()
    elif security == 0x30:
        encryptor = Cipher(algorithms.AES(BLOCK_KEY), modes.GCM(iv)).encryptor()
        encryptor.authenticate_additional_data(aad)
        assert body == encryptor.update(apdu) + encryptor.finalize() + encryptor.tag[:12]
    else:
        encryptor = Cipher(algorithms.AES(BLOCK_KEY), modes.GCM(iv)).encryptor()
        encryptor.authenticate_additional_data(aad + apdu)
        encryptor.finalize()
        assert body == apdu + encryptor.tag[:12]
    assert meter.unprotect(ciphered, peer_title=b"GWEDGE01") == (0xCB, 41, apdu)
    if security != 0x20:  # encryption alone has no tag
        for position in (-1, -12):
            tampered = bytearray(ciphered)
            tampered[position] ^= 0x80
            with pytest.raises(ApduError):
                meter.unprotect(bytes(tampered), peer_title=b"GWEDGE01")
