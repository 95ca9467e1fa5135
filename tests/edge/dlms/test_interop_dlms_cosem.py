"""An independent client (dlms-cosem, MIT) reads the simulator: it speaks real DLMS, not just gurux's."""

from __future__ import annotations

import asyncio

from dlms_cosem import cosem, enumerations
from dlms_cosem.client import DlmsClient
from dlms_cosem.io import BlockingTcpIO, TcpTransport
from dlms_cosem.security import LowLevelSecurityAuthentication
from dlms_cosem.utils import parse_as_dlms_data

from edge.dlms import DlmsMeterSimulator, MeterModel
from tests.edge.dlms.conftest import PASSWORD


def _read_with_dlms_cosem(port: int) -> tuple[int, bytes, bytes]:
    transport = TcpTransport(client_logical_address=1, server_logical_address=1,
                             io=BlockingTcpIO(host="127.0.0.1", port=port, timeout=5))
    client = DlmsClient(transport=transport,
                        authentication=LowLevelSecurityAuthentication(secret=PASSWORD.encode()))
    with client.session():
        energy = client.get(cosem.CosemAttribute(interface=enumerations.CosemInterface.REGISTER,
                                                 instance=cosem.Obis.from_string("1.0.1.8.1.255"), attribute=2))
        clock = client.get(cosem.CosemAttribute(interface=enumerations.CosemInterface.CLOCK,
                                                instance=cosem.Obis.from_string("0.0.1.0.0.255"), attribute=2))
        name = client.get(cosem.CosemAttribute(interface=enumerations.CosemInterface.DATA,
                                               instance=cosem.Obis.from_string("0.0.42.0.0.255"), attribute=2))
    return parse_as_dlms_data(energy), parse_as_dlms_data(clock), parse_as_dlms_data(name)


async def test_dlms_cosem_reads_register_clock_and_name_over_lls(lls_meter: DlmsMeterSimulator,
                                                                   model: MeterModel) -> None:
    # dlms-cosem is blocking; run it in a worker thread while the simulator serves on this loop.
    energy, clock, name = await asyncio.to_thread(_read_with_dlms_cosem, lls_meter.port)
    assert energy == model.register_value("1.0.1.8.1.255")
    now = model.meter_now()
    assert len(clock) == 12
    assert int.from_bytes(clock[0:2], "big") == now.year
    assert (clock[2], clock[3], clock[5], clock[6]) == (now.month, now.day, now.hour, now.minute)
    assert name == b"GWTEST000042"
