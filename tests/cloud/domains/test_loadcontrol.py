"""Load control and distributed generation end to end: API -> domain -> core -> concentrator executor ->
the real Modbus handlers -> simulated inverter and relay over Modbus TCP, and the read-back result."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from pydantic import ValidationError

from broker.schemas import MeterReading
from cloud.domains.loadcontrol.translator import DOMAIN
from cloud.registry import DeviceCreate, DeviceType, FunctionGroup, Protocol
from edge.commands.meter_handlers import modbus_handlers
from edge.modbus import ModbusSimulator, load_map
from edge.modbus.config import ModbusMeterConfig
from edge.modbus.source import ModbusConnections, build_sources
from edge.polling import MeterPoller
from tests.cloud.core.harness import CONCENTRATOR, ORG_A, ORG_B, Stack
from tests.cloud.domains.test_end_to_end import _run

INVERTER, RELAY = "inverter-1", "relay-1"


@dataclass
class Devices:
    stack: Stack
    inverter: ModbusSimulator
    relay: ModbusSimulator


async def _discard(_reading: MeterReading) -> None:
    return None


async def register_modbus(stack: Stack, device_id: str, device_type: DeviceType) -> None:
    await stack.registry.create_device(DeviceCreate(identification=device_id, device_type=device_type,
                                                    protocol=Protocol.MODBUS, concentrator_id=CONCENTRATOR),
                                       owner=ORG_A)


@pytest.fixture
async def devices(stack: Stack) -> AsyncIterator[Devices]:
    """An inverter and a four-load relay behind conc-1, served by the real Modbus handlers."""
    async with ModbusSimulator(register_map=load_map("solar-inverter"), clock=lambda: 0.0) as inverter, \
            ModbusSimulator(register_map=load_map("load-control-relay"), clock=lambda: 0.0) as relay:
        connections = ModbusConnections()
        configs = [ModbusMeterConfig.model_validate({"meterIndividualId": device, "registerMap": name,
                                                     "tcp": {"host": "127.0.0.1", "port": sim.port}, "timeout": 2})
                   for device, name, sim in ((INVERTER, "solar-inverter", inverter),
                                             (RELAY, "load-control-relay", relay))]
        poller = MeterPoller(sink=_discard)
        assert stack.executor is not None
        for source in build_sources(configs, connections):
            poller.add(source)
            stack.executor.register(source.meter_id, modbus_handlers(source=source, poller=poller,
                                                                     completeness=lambda _m, _d: {}))
        await register_modbus(stack, INVERTER, DeviceType.INVERTER)
        await register_modbus(stack, RELAY, DeviceType.LOAD_CONTROL)
        try:
            yield Devices(stack, inverter, relay)
        finally:
            connections.close()


async def test_power_limit_is_written_and_read_back(devices: Devices) -> None:
    note, result = await _run(devices.stack, "loadcontrol", f"{INVERTER}/powerLimit", {"percent": 40})
    assert note["_topic"] == "app/org-a/loadcontrol/setPowerLimit"
    assert result["status"] == "SUCCEEDED", result
    assert [c["name"] for c in result["commands"]] == ["set_power_limit"]
    assert result["result"] == {"activePowerLimit": 40}
    assert devices.inverter.value("power_limit") == 40

    _, state = await _run(devices.stack, "loadcontrol", f"{INVERTER}/state")
    assert state["status"] == "SUCCEEDED"
    assert state["result"]["activePowerLimit"] == 40
    assert state["result"]["values"]["ac_power"] == pytest.approx(3.0)
    assert "loads" not in state["result"]


async def test_a_load_is_switched_and_its_contact_read_back(devices: Devices) -> None:
    _, result = await _run(devices.stack, "loadcontrol", f"{RELAY}/load", {"index": 2, "on": True})
    assert result["status"] == "SUCCEEDED", result
    assert result["result"] == {"loads": [{"index": 2, "closed": True}]}
    assert devices.relay.value("relay_2") is True and devices.relay.value("relay_2_state") is True

    _, state = await _run(devices.stack, "loadcontrol", f"{RELAY}/state")
    assert state["result"]["loads"] == [{"index": 1, "closed": False}, {"index": 2, "closed": True},
                                        {"index": 3, "closed": False}, {"index": 4, "closed": False}]


async def test_a_contact_that_does_not_follow_fails_the_command(devices: Devices) -> None:
    devices.relay.set_value("relay_3_state", False)  # welded open: the coil moves, the contact does not
    _, result = await _run(devices.stack, "loadcontrol", f"{RELAY}/load", {"index": 3, "on": True})
    assert result["status"] == "FAILED"
    [command] = result["commands"]
    assert command["error"]["code"] == "DEVICE_ERROR"
    assert "relay_3_state reads False" in command["error"]["message"]


async def test_commands_the_device_cannot_take_fail_with_a_reason(devices: Devices) -> None:
    _, result = await _run(devices.stack, "loadcontrol", f"{RELAY}/load", {"index": 9, "on": True})
    assert result["status"] == "FAILED" and result["commands"][0]["error"]["code"] == "INVALID_PARAMETERS"
    _, result = await _run(devices.stack, "loadcontrol", f"{INVERTER}/load", {"on": True})
    assert result["status"] == "FAILED" and result["commands"][0]["error"]["code"] == "UNSUPPORTED_COMMAND"
    _, result = await _run(devices.stack, "loadcontrol", f"{RELAY}/powerLimit", {"percent": 10})
    assert result["status"] == "FAILED" and result["commands"][0]["error"]["code"] == "UNSUPPORTED_COMMAND"


@pytest.mark.parametrize(("path", "body"), [("powerLimit", {"percent": 101}), ("powerLimit", {"percent": -1}),
                                            ("powerLimit", {}), ("powerLimit", {"percent": 50, "watts": 3}),
                                            ("load", {"index": 0, "on": True}), ("load", {"on": "yes"}),
                                            ("load", {"index": 17, "on": False}), ("powerLimit", {"percent": "50"})])
async def test_bad_requests_are_refused_before_anything_is_sent(devices: Devices, path: str, body: dict) -> None:
    answer = await devices.stack.post(f"/v1/loadcontrol/devices/{INVERTER}/{path}", body)
    assert answer.status_code == 422, answer.text
    assert devices.inverter.request_counts.get(6, 0) == 0


async def test_function_groups_decide_who_may_limit_and_who_may_look(devices: Devices) -> None:
    stack = devices.stack
    answer = await stack.post(f"/v1/loadcontrol/devices/{INVERTER}/state", org=ORG_B)
    assert answer.status_code == 403 and "GET_STATUS" in answer.json()["detail"]
    await stack.registry.grant(INVERTER, ORG_B, FunctionGroup.MONITORING)
    assert (await stack.post(f"/v1/loadcontrol/devices/{INVERTER}/state", org=ORG_B)).status_code == 202
    answer = await stack.post(f"/v1/loadcontrol/devices/{INVERTER}/powerLimit", {"percent": 0}, org=ORG_B)
    assert answer.status_code == 403 and "SET_POWER_LIMIT" in answer.json()["detail"]
    await stack.registry.grant(INVERTER, ORG_B, FunctionGroup.CONFIGURATION)
    assert (await stack.post(f"/v1/loadcontrol/devices/{INVERTER}/powerLimit", {"percent": 0},
                             org=ORG_B)).status_code == 202
    answer = await stack.post(f"/v1/loadcontrol/devices/{RELAY}/load", {"on": True}, org=ORG_B)
    assert answer.status_code == 403 and "SET_LOAD" in answer.json()["detail"]


def test_operations_translate_to_their_generic_commands() -> None:
    assert [(c.name, c.parameters) for c in DOMAIN.operation("setPowerLimit").commands({"percent": 60})] == [
        ("set_power_limit", {"percent": 60})]
    assert [(c.name, c.parameters) for c in DOMAIN.operation("switchLoad").commands({"on": False})] == [
        ("set_load", {"index": 1, "closed": False})]
    with pytest.raises(ValidationError):
        DOMAIN.operation("switchLoad").commands({"index": 1})
