"""The concentrator's command executor against a real broker: dispatch, errors, expiry, locking."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from broker import topics
from broker.schemas.command import CommandResponse, CommandStatus, GenericCommand
from broker.session import Backoff, Message, MqttSession, publish_properties
from edge.commands import CommandExecutor, DeviceUnreachable, execute
from tests.fixtures.mosquitto import MosquittoServer

CID = "conc-2"
_ids = itertools.count()


def _session(broker: MosquittoServer, user: str) -> MqttSession:
    return MqttSession(client_id=f"{user}-exec-{next(_ids)}", host=broker.host, port=broker.port, session_expiry=0,
                       backoff=Backoff(initial=0.05, maximum=0.5), **broker.credentials(user))


class Cloud:
    """The core's side: sends commands, collects the answers by correlation data."""

    def __init__(self, session: MqttSession) -> None:
        self.session = session
        self.answers: dict[bytes, tuple[CommandResponse, Message]] = {}
        self.changed = asyncio.Condition()

    async def on_response(self, message: Message) -> None:
        async with self.changed:
            assert message.correlation_data is not None
            self.answers[message.correlation_data] = (CommandResponse.model_validate_json(message.payload), message)
            self.changed.notify_all()

    async def run(self, device: str, name: str, params: dict[str, Any] | None = None, *,
                  ttl: float = 30.0) -> CommandResponse:
        now = datetime.now(UTC)
        command = GenericCommand(deviceId=device, name=name, parameters=params or {}, issuedAt=now,
                                 expiresAt=now + timedelta(seconds=ttl))
        await self.session.publish(topics.concentrator_command(CID), command.to_wire(), properties=publish_properties(
            correlation_data=command.correlation_data(), response_topic=topics.concentrator_response(CID)))
        async with asyncio.timeout(10), self.changed:
            await self.changed.wait_for(lambda: command.correlation_data() in self.answers)
        return self.answers[command.correlation_data()][0]


class Relay:
    """A device with handlers that record overlap, so the per-device lock can be seen."""

    def __init__(self) -> None:
        self.active = 0
        self.max_active = 0
        self.unreachable = False

    async def switch(self, params: dict[str, Any]) -> dict[str, Any]:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            await asyncio.sleep(0.02)  # a device's round trip, so concurrent commands would overlap
            if self.unreachable:
                raise DeviceUnreachable("no answer on the serial line")
            return {"closed": bool(params["closed"])}
        finally:
            self.active -= 1


@pytest.fixture
async def cloud(shared_mosquitto: MosquittoServer) -> AsyncIterator[tuple[Cloud, CommandExecutor, Relay]]:
    async with _session(shared_mosquitto, "gridwire-cloud") as cloud_session, \
            _session(shared_mosquitto, CID) as edge_session:
        cloud = Cloud(cloud_session)
        await cloud_session.subscribe(topics.concentrator_response(CID), cloud.on_response)
        executor = CommandExecutor(session=edge_session, concentrator_id=CID)
        relay = Relay()
        executor.register("relay-1", {"set_relay": relay.switch})
        await executor.start()
        yield cloud, executor, relay


async def test_dispatches_and_answers_with_correlation(cloud: tuple[Cloud, CommandExecutor, Relay]) -> None:
    client, executor, _relay = cloud
    answer = await client.run("relay-1", "set_relay", {"closed": True})
    assert answer.status is CommandStatus.SUCCEEDED and answer.result == {"closed": True}
    assert executor.executed == 1


@pytest.mark.parametrize(("device", "name", "params", "code", "transient"), [
    ("nobody", "set_relay", {"closed": True}, "UNKNOWN_DEVICE", False),
    ("relay-1", "read_now", {}, "UNSUPPORTED_COMMAND", False),
    ("relay-1", "set_relay", {}, "INVALID_PARAMETERS", False),
])
async def test_specific_error_codes(cloud: tuple[Cloud, CommandExecutor, Relay], device: str, name: str,
                                    params: dict[str, Any], code: str, transient: bool) -> None:
    answer = await cloud[0].run(device, name, params)
    assert answer.status is CommandStatus.FAILED
    assert answer.error is not None and answer.error.code == code and answer.error.transient is transient


async def test_unreachable_device_is_a_transient_failure(cloud: tuple[Cloud, CommandExecutor, Relay]) -> None:
    cloud[2].unreachable = True
    answer = await cloud[0].run("relay-1", "set_relay", {"closed": True})
    assert answer.error is not None and answer.error.code == "DEVICE_UNREACHABLE" and answer.error.transient


async def test_expired_command_is_answered_not_run(cloud: tuple[Cloud, CommandExecutor, Relay]) -> None:
    client, executor, relay = cloud
    answer = await client.run("relay-1", "set_relay", {"closed": True}, ttl=-1)
    assert answer.status is CommandStatus.EXPIRED and answer.error is not None and answer.error.code == "EXPIRED"
    assert executor.executed == 0 and relay.max_active == 0


async def test_one_command_at_a_time_per_device(cloud: tuple[Cloud, CommandExecutor, Relay]) -> None:
    client, executor, relay = cloud
    answers = await asyncio.gather(*(client.run("relay-1", "set_relay", {"closed": i % 2 == 0}) for i in range(6)))
    assert all(a.status is CommandStatus.SUCCEEDED for a in answers)
    assert relay.max_active == 1 and executor.executed == 6


async def test_response_topic_defaults_to_own_response_topic(cloud: tuple[Cloud, CommandExecutor, Relay]) -> None:
    client = cloud[0]
    now = datetime.now(UTC)
    command = GenericCommand(deviceId="relay-1", name="set_relay", parameters={"closed": False}, issuedAt=now)
    await client.session.publish(topics.concentrator_command(CID), command.to_wire())
    async with asyncio.timeout(10), client.changed:
        await client.changed.wait_for(lambda: command.correlation_data() in client.answers)
    response, message = client.answers[command.correlation_data()]
    assert message.topic == topics.concentrator_response(CID) and response.result == {"closed": False}


async def test_execute_is_usable_without_a_broker() -> None:
    now = datetime.now(UTC)
    command = GenericCommand(deviceId="x", name="ping", issuedAt=now)

    async def ping(params: dict[str, Any]) -> dict[str, Any]:
        return {"pong": json.dumps(params)}

    answer = await execute(command, {"ping": ping}, now=now)
    assert answer.status is CommandStatus.SUCCEEDED and answer.result == {"pong": "{}"}
