"""Bench: register reads per second from the DLMS simulator, LLS vs HLS-GMAC, over loopback TCP.

Run: ``.venv/bin/python bench/dlms_reads.py [seconds-per-mode]``. One association per mode,
then GETs of 1.0.1.8.1.255 attribute 2 in a loop (simulator and client share one process and
one core's event loop, so the figure is the combined cost of both ends).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

from pydantic import SecretStr

from edge.dlms import DlmsMeterConfig, DlmsMeterSimulator, InvocationCounterStore, SecurityMode, ServerSecurity
from edge.dlms.client import DlmsAssociation

from gurux_dlms.objects.GXDLMSRegister import GXDLMSRegister  # noqa: I001

KEY_A = bytes(range(16))
KEY_B = bytes(range(16, 32))


async def bench(mode: SecurityMode, seconds: float, store: InvocationCounterStore) -> float:
    security = ServerSecurity(mode=mode, password=b"bench-pw", block_cipher_key=KEY_A, authentication_key=KEY_B)
    async with DlmsMeterSimulator(security=security, name=f"bench-{mode}") as sim:
        config = DlmsMeterConfig(meter_id=f"bench-{mode}", host="127.0.0.1", port=sim.port, security=mode,
                                 password=SecretStr("bench-pw"), block_cipher_key=SecretStr(KEY_A.hex()),
                                 authentication_key=SecretStr(KEY_B.hex()))
        async with DlmsAssociation(config=config, counters=store) as link:
            register = GXDLMSRegister("1.0.1.8.1.255")
            await link.read(register, 3)
            reads = 0
            started = time.perf_counter()
            while time.perf_counter() - started < seconds:
                await link.read(register, 2)
                reads += 1
            return reads / (time.perf_counter() - started)


async def main(seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = InvocationCounterStore(Path(tmp) / "counters.sqlite")
        for mode in (SecurityMode.LLS, SecurityMode.HLS_GMAC):
            rate = await bench(mode, seconds, store)
            print(f"{mode.value:9s} {rate:8.0f} reads/s")


if __name__ == "__main__":
    asyncio.run(main(float(sys.argv[1]) if len(sys.argv) > 1 else 3.0))
