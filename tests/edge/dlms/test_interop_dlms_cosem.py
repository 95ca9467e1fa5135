"""An independent client (dlms-cosem, MIT) reads the simulator: it speaks real DLMS, not just gurux's.

dlms-cosem is a test dependency only: the concentrator never imports it (tests/test_layers.py).
"""

from __future__ import annotations

import asyncio

from dlms_cosem import cosem, enumerations
from dlms_cosem.client import DlmsClient
from dlms_cosem.io import BlockingTcpIO, TcpTransport
from dlms_cosem.security import HighLevelSecurityGmacAuthentication, LowLevelSecurityAuthentication
from dlms_cosem.utils import parse_as_dlms_data

from edge.dlms import DlmsMeterSimulator, MeterModel
from tests.edge.dlms.conftest import AUTH_KEY, BLOCK_KEY, PASSWORD

CLIENT_TITLE = b"INTEROP1"


def _reads(client: DlmsClient) -> tuple[int, bytes, bytes]:
    with client.session():
        energy = client.get(cosem.CosemAttribute(interface=enumerations.CosemInterface.REGISTER,
                                                 instance=cosem.Obis.from_string("1.0.1.8.1.255"), attribute=2))
        clock = client.get(cosem.CosemAttribute(interface=enumerations.CosemInterface.CLOCK,
                                                instance=cosem.Obis.from_string("0.0.1.0.0.255"), attribute=2))
        name = client.get(cosem.CosemAttribute(interface=enumerations.CosemInterface.DATA,
                                               instance=cosem.Obis.from_string("0.0.42.0.0.255"), attribute=2))
    return parse_as_dlms_data(energy), parse_as_dlms_data(clock), parse_as_dlms_data(name)


def _transport(port: int) -> TcpTransport:
    return TcpTransport(client_logical_address=1, server_logical_address=1,
                        io=BlockingTcpIO(host="127.0.0.1", port=port, timeout=5))


def _check(model: MeterModel, energy: int, clock: bytes, name: bytes) -> None:
    assert energy == model.register_value("1.0.1.8.1.255")
    now = model.meter_now()
    assert len(clock) == 12
    assert int.from_bytes(clock[0:2], "big") == now.year
    assert (clock[2], clock[3], clock[5], clock[6]) == (now.month, now.day, now.hour, now.minute)
    assert name == b"GWTEST000042"


async def test_dlms_cosem_reads_register_clock_and_name_over_lls(lls_meter: DlmsMeterSimulator,
                                                                   model: MeterModel) -> None:
    client = DlmsClient(transport=_transport(lls_meter.port),
                        authentication=LowLevelSecurityAuthentication(secret=PASSWORD.encode()))
    # dlms-cosem is blocking; run it in a worker thread while the simulator serves on this loop.
    _check(model, *await asyncio.to_thread(_reads, client))


async def test_dlms_cosem_associates_with_hls_gmac_twice(hls_meter: DlmsMeterSimulator, model: MeterModel) -> None:
    # It parses the AARE (the responding-authentication-value's BER length), follows the meter's
    # invocation counter (rising across associations) and reads the general-glo-ciphered answers.
    for counter in (0, 50):
        client = DlmsClient(transport=_transport(hls_meter.port),
                            authentication=HighLevelSecurityGmacAuthentication(challenge_length=32),
                            encryption_key=BLOCK_KEY, authentication_key=AUTH_KEY, client_system_title=CLIENT_TITLE,
                            client_initial_invocation_counter=counter)
        _check(model, *await asyncio.to_thread(_reads, client))
    assert model.invocation_counter > 4
