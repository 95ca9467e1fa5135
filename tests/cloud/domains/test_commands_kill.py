"""A concentrator SIGKILLed in the middle of a new command path: after the restart the broker hands
it the unacknowledged command again, it runs it once more, and the platform records one command,
one result and one notification.

- load control: the inverter took the power-limit write and its answer never left; the write is
  repeated and read back, with the limit the device really holds;
- power quality: the meter hangs in the association, the concentrator dies waiting; after the
  restart the read runs on the meter that answers again."""

from __future__ import annotations

from pathlib import Path

from cloud.registry import DeviceType
from edge.dlms import DlmsMeterSimulator, MeterModel, SecurityMode, ServerSecurity
from edge.modbus import ModbusSimulator, load_map
from tests.cloud.core.harness import METER, platform
from tests.cloud.domains.test_loadcontrol import INVERTER, register_modbus
from gridwire.procs import ManagedProcess
from tests.edge.concentrator.conftest import concentrator_process, wait_for, write_config
from tests.fixtures.mosquitto import MosquittoServer

WRITE_SINGLE_REGISTER = 6


def inverter_entry(port: int) -> str:
    # Long timeout: the kill must land while the concentrator waits for the silent device's answer.
    return (f'[[meters]]\nprotocol = "modbus"\nmeterIndividualId = "{INVERTER}"\nregisterMap = "solar-inverter"\n'
            f'interval = 3600\ntimeout = 30\ntcp = {{ host = "127.0.0.1", port = {port} }}\n')


def ready_concentrator(config: Path, ready: Path) -> ManagedProcess:
    """The concentrator as its own process, writing ``ready`` once connected to the broker (commands
    published before its first connection would find no subscription and be dropped)."""
    proc = concentrator_process(config)
    proc.env = {"GRIDWIRE_READY_FILE": str(ready)}
    return proc


async def test_killed_mid_write_the_command_is_finished_once_after_restart(mosquitto: MosquittoServer,
                                                                           tmp_path: Path) -> None:
    async with ModbusSimulator(register_map=load_map("solar-inverter"), clock=lambda: 0.0) as inverter, \
            platform(mosquitto, f"sqlite+aiosqlite:///{tmp_path / 'platform.db'}", concentrator=False) as stack:
        await register_modbus(stack, INVERTER, DeviceType.INVERTER)
        config = write_config(tmp_path / "conc", mqtt_port=mosquitto.port, initial_hours=0,
                              meters=[inverter_entry(inverter.port)])
        ready = tmp_path / "conc" / "ready"
        proc = ready_concentrator(config, ready)
        proc.start()
        try:
            await wait_for(ready.exists, timeout=60, what="the concentrator to connect")
            warm = await stack.post(f"/v1/loadcontrol/devices/{INVERTER}/state")
            assert (await stack.notification(warm.json()["correlationId"], timeout=60))["status"] == "SUCCEEDED"

            inverter.silent = True  # the device takes the write; its answer never leaves
            answer = await stack.post(f"/v1/loadcontrol/devices/{INVERTER}/powerLimit", {"percent": 30})
            assert answer.status_code == 202, answer.text
            correlation = answer.json()["correlationId"]
            await wait_for(lambda: inverter.request_counts.get(WRITE_SINGLE_REGISTER, 0) >= 1, timeout=30,
                           what="the write to reach the inverter")
            proc.kill()
            ready.unlink(missing_ok=True)  # a killed process leaves its ready file behind
            writes_before_kill = inverter.request_counts[WRITE_SINGLE_REGISTER]
            inverter.silent = False
            assert inverter.value("power_limit") == 30  # done on the device, unanswered

            proc.start()
            await wait_for(ready.exists, timeout=60, what="the concentrator to connect again")
            note = await stack.notification(correlation, timeout=60)
            assert note["status"] == "SUCCEEDED", note
            # A later request's notification comes after any duplicate of the first one would.
            marker = await stack.post(f"/v1/loadcontrol/devices/{INVERTER}/state")
            await stack.notification(marker.json()["correlationId"], timeout=60)
        finally:
            proc.stop()

        result = await stack.result("loadcontrol", correlation)
        assert result["status"] == "SUCCEEDED"
        assert result["result"] == {"activePowerLimit": 30}
        [command] = result["commands"]
        assert command["status"] == "SUCCEEDED"
        notes = [m for ms in stack.app_inbox.messages.values() for m in ms if correlation.encode() in m.payload]
        assert len(notes) == 1
        assert inverter.request_counts[WRITE_SINGLE_REGISTER] > writes_before_kill  # written again after the restart
        log = (tmp_path / "conc" / "concentrator.log").read_text()
        assert log.count(f"meter {INVERTER}: wrote power_limit = 30") == 1  # the first write was never answered


async def test_killed_waiting_for_the_meter_the_power_quality_read_is_answered_once(mosquitto: MosquittoServer,
                                                                                    tmp_path: Path) -> None:
    async with DlmsMeterSimulator(model=MeterModel(), security=ServerSecurity(mode=SecurityMode.NONE),
                                  name="pq-kill") as meter, \
            platform(mosquitto, f"sqlite+aiosqlite:///{tmp_path / 'platform.db'}", concentrator=False) as stack:
        entry = (f'[[meters]]\nprotocol = "dlms"\nmeter_id = "{METER}"\nhost = "127.0.0.1"\nport = {meter.port}\n'
                 'security = "none"\nprofile = "smr-5"\ninterval_s = 3600\ntimeout_s = 30\n')
        config = write_config(tmp_path / "conc", mqtt_port=mosquitto.port, initial_hours=0, meters=[entry])
        ready = tmp_path / "conc" / "ready"
        proc = ready_concentrator(config, ready)
        proc.start()
        try:
            await wait_for(ready.exists, timeout=60, what="the concentrator to connect")
            # A first read through the platform: the concentrator's start-up work on the meter is
            # done (it holds the meter's lock), so the next connection is the command's.
            warm = await stack.post(f"/v1/powerquality/devices/{METER}/events")
            assert (await stack.notification(warm.json()["correlationId"], timeout=60))["status"] == "SUCCEEDED"
            meter.unresponsive = True
            accepted = meter.connections_accepted
            answer = await stack.post(f"/v1/powerquality/devices/{METER}/actualValues")
            correlation = answer.json()["correlationId"]
            await wait_for(lambda: meter.connections_accepted > accepted, timeout=60,
                           what="the concentrator to call the meter")
            proc.kill()
            meter.unresponsive = False
            ready.unlink(missing_ok=True)
            proc.start()
            note = await stack.notification(correlation, timeout=60)
            assert note["status"] == "SUCCEEDED", note
            marker = await stack.post(f"/v1/powerquality/devices/{METER}/events")
            await stack.notification(marker.json()["correlationId"], timeout=60)
        finally:
            proc.stop()

        result = await stack.result("powerquality", correlation)
        assert result["status"] == "SUCCEEDED" and len(result["commands"]) == 1
        assert set(result["result"]["phases"]) == {"L1", "L2", "L3"}
        notes = [m for ms in stack.app_inbox.messages.values() for m in ms if correlation.encode() in m.payload]
        assert len(notes) == 1
