"""Commands end to end: the cloud publishes a GenericCommand with MQTT 5 correlation data and a
response topic, the concentrator runs it on the meter and answers with the same correlation."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from broker import topics
from broker.schemas.command import CommandResponse, CommandStatus, GenericCommand
from broker.session import Message, MqttSession, publish_properties
from tests.edge.concentrator.conftest import T0, dlms_entry, modbus_entry, wait_for, write_config
from tests.fixtures.ingest import cloud_session

RESPONSES = topics.concentrator_response("conc-1")


class Core:
    """The cloud's core as far as one concentrator is concerned: send a command, await its answer."""

    def __init__(self, session: MqttSession) -> None:
        self.session = session
        self.pending: dict[bytes, asyncio.Future[tuple[Message, CommandResponse]]] = {}

    async def on_response(self, message: Message) -> None:
        future = self.pending.pop(message.correlation_data or b"", None)
        if future is not None and not future.done():
            future.set_result((message, CommandResponse.model_validate_json(message.payload)))

    async def send(self, device: str, name: str, **parameters: object) -> CommandResponse:
        command = GenericCommand(deviceId=device, name=name, parameters=parameters, issuedAt=datetime.now(UTC))
        correlation = uuid.uuid4().bytes  # not the command id: the answer must echo what we sent
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self.pending[correlation] = future
        await self.session.publish(topics.concentrator_command("conc-1"), command.to_wire(), qos=1,
                                   properties=publish_properties(correlation_data=correlation,
                                                                 response_topic=RESPONSES, message_expiry=30))
        message, response = await asyncio.wait_for(future, 15)
        assert message.correlation_data == correlation
        assert response.command_id == command.command_id
        return response


@pytest.fixture
async def core(mosquitto) -> AsyncIterator[Core]:
    session = cloud_session(mosquitto)
    await session.connect()
    core = Core(session)
    await session.subscribe(RESPONSES, core.on_response)
    yield core
    await session.close()


async def test_commands_on_dlms_and_modbus_meters_answer_with_correlation(
        tmp_path, mosquitto, clock, lls_sim, modbus_sim, core, run_concentrator):
    config = write_config(tmp_path, mqtt_port=mosquitto.port, initial_hours=0,
                          meters=[dlms_entry("lls-1", lls_sim), modbus_entry("inv-1", modbus_sim)])
    run = await run_concentrator(config, clock=clock)
    await wait_for(lambda: run.concentrator.session.connected.is_set() and run.concentrator.ledger.last_reading("inv-1"),
                   what="the concentrator to run")

    read = await core.send("lls-1", "read_now")
    assert read.status is CommandStatus.SUCCEEDED
    (reading,) = read.result["readings"]
    assert reading["readingTime"] == T0.isoformat()
    assert reading["values"]["OBIS_1.8.1"] == {"value": pytest.approx(lls_sim.model.energy_at("1.0.1.8.1.255", T0) / 1000),
                                              "unit": "kWh"}

    off = await core.send("lls-1", "disconnect")
    assert (off.status, off.result, lls_sim.model.output_state) == (CommandStatus.SUCCEEDED, {"outputState": False},
                                                                    False)
    on = await core.send("lls-1", "connect")
    assert (on.status, on.result, lls_sim.model.output_state) == (CommandStatus.SUCCEEDED, {"outputState": True}, True)

    clock_answer = await core.send("lls-1", "get_clock")
    assert clock_answer.result["time"] == T0.isoformat() and clock_answer.result["offsetSeconds"] == 0

    written = await core.send("inv-1", "write_register", point="power_limit", value=55)
    assert written.status is CommandStatus.SUCCEEDED
    assert modbus_sim.value("power_limit") == 55
    too_big = await core.send("inv-1", "write_register", point="power_limit", value=500)
    assert (too_big.status, too_big.error.code) == (CommandStatus.FAILED, "INVALID_PARAMETERS")
    assert modbus_sim.value("power_limit") == 55

    unknown = await core.send("lls-1", "self_destruct")
    assert (unknown.status, unknown.error.code) == (CommandStatus.FAILED, "UNSUPPORTED_COMMAND")
    nobody = await core.send("meter-elsewhere", "read_now")
    assert nobody.error.code == "UNKNOWN_DEVICE"

    completeness = await core.send("lls-1", "get_completeness", days=2)
    # 15-minute intervals: only 12:00 holds readings of the 49 begun by 12:00 that day.
    assert completeness.result == {"completeness": {"2026-03-09": 0.0, T0.date().isoformat(): round(1 / 49, 4)}}

    lls_sim.set_down(True)
    unreachable = await core.send("lls-1", "get_clock")
    assert (unreachable.status, unreachable.error.code, unreachable.error.transient) == (
        CommandStatus.FAILED, "DEVICE_UNREACHABLE", True)
    await run.finish()
