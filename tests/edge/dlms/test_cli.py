"""``python -m edge.dlms.cli`` runs a simulator process the adapter can read with HLS-GMAC."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from pydantic import SecretStr

from edge.dlms import DlmsMeterAdapter, DlmsMeterConfig, InvocationCounterStore
from edge.dlms.cli import DEMO_AUTH_KEY, DEMO_BLOCK_KEY
from tests.fixtures.procs import ManagedProcess, free_port


async def test_cli_simulator_process_serves_hls(tmp_path: Path) -> None:
    port = free_port()
    proc = ManagedProcess(argv=[sys.executable, "-m", "edge.dlms.cli", "--port", str(port),
                                "--security", "hls-gmac", "--serial", "GWCLI0000001"],
                          log=tmp_path / "sim.log", port=port, cwd=Path(__file__).resolve().parents[3])
    await asyncio.to_thread(proc.start)
    try:
        config = DlmsMeterConfig(meter_id="cli-meter", host="127.0.0.1", port=port, security="hls-gmac",
                                 block_cipher_key=SecretStr(DEMO_BLOCK_KEY),
                                 authentication_key=SecretStr(DEMO_AUTH_KEY))
        adapter = DlmsMeterAdapter(config=config, counters=InvocationCounterStore(tmp_path / "c.sqlite"))
        reading = await adapter.read_registers()
        assert {v.property_id for v in reading.property_values} >= {"OBIS_1.8.1", "OBIS_1.7.0"}
    finally:
        await asyncio.to_thread(proc.stop)
    assert not proc.running
    assert "DLMS meter GWCLI0000001" in (tmp_path / "sim.log").read_text()
