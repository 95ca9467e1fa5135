"""``python -m edge.dlms.cli`` runs a simulator process the adapter can read with HLS-GMAC."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from edge.dlms import DlmsError, DlmsMeterAdapter, DlmsMeterConfig, InvocationCounterStore
from edge.dlms.cli import DEMO_AUTH_KEY, DEMO_BLOCK_KEY, DEMO_PASSWORD, build_simulator, parse_clients
from gridwire.cli import app
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


async def test_client_saps_and_their_passwords_come_from_the_command_line(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("GRIDWIRE_DLMS_PASSWORD_32", "thirty-two")
    sim = build_simulator(port=0, clients=["32:lls", "16:none"], serial="GWCLI0000002")
    assert repr(sim.security) == "ServerSecurity(clients=[32:lls, 16:none], server=1)"

    def config(client: int, password: str) -> DlmsMeterConfig:
        return DlmsMeterConfig(meter_id="cli-meter", host="127.0.0.1", port=sim.port, security="lls",
                               password=SecretStr(password), client_address=client, timeout_s=2.0)

    async with sim:
        reading = await DlmsMeterAdapter(config=config(32, "thirty-two")).read_registers()
        assert {v.property_id for v in reading.property_values} >= {"OBIS_1.8.1"}
        for refused in (config(32, DEMO_PASSWORD), config(1, DEMO_PASSWORD)):  # wrong password; no client 1
            with pytest.raises(DlmsError):
                await DlmsMeterAdapter(config=refused).read_registers()


def test_bad_client_specs_say_how_to_write_one() -> None:
    for spec, fragment in (("16", "ADDRESS:SECURITY"), ("x:lls", "ADDRESS:SECURITY"), ("16:hls", "hls-gmac"),
                           ("200:none", "1..127")):
        with pytest.raises(ValueError, match=fragment):
            parse_clients([spec])
    with pytest.raises(ValueError, match="given twice"):
        parse_clients(["1:lls", "1:none"])
    result = CliRunner().invoke(app, ["sim", "dlms", "--client", "16"])
    assert result.exit_code != 0 and "ADDRESS:SECURITY" in result.output
