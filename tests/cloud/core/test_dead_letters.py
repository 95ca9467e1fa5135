"""Bad input to the core is dead-lettered with its reason, and the core goes on working."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from broker import topics
from broker.schemas.command import CommandResponse, CommandStatus
from tests.cloud.core.harness import CONCENTRATOR, LIGHT, METER, Stack, session_for
from tests.fixtures.waiting import wait_for


def _response(command_id: str, device: str, status: CommandStatus = CommandStatus.SUCCEEDED) -> bytes:
    return CommandResponse(commandId=command_id, deviceId=device, status=status,
                           completedAt=datetime.now(UTC)).to_wire()


def _kept(payload: bytes) -> str:
    """A payload as the dead-letter store keeps it: text, or hex when it is not UTF-8."""
    try:
        return payload.decode()
    except UnicodeDecodeError:
        return "hex:" + payload.hex()


async def _light_status(stack: Stack) -> tuple[str, str]:
    """Ask the light for its status through the API; its correlation id and its one command's id."""
    answer = await stack.post(f"/v1/publiclighting/devices/{LIGHT}/status")
    assert answer.status_code == 202, answer.text
    correlation = answer.json()["correlationId"]
    assert (await stack.notification(correlation))["status"] == "SUCCEEDED"
    return correlation, (await stack.result("publiclighting", correlation))["commands"][0]["commandId"]


async def test_malformed_commands_and_answers_are_dead_lettered_and_the_core_goes_on(stack: Stack) -> None:
    _, sent = await _light_status(stack)
    now = datetime.now(UTC).isoformat()
    request, answers, light = (topics.core_topic("request", "org-a"), topics.concentrator_response(CONCENTRATOR),
                               topics.device_topic(LIGHT, "response"))
    bad = [  # (who publishes, topic, payload, a part of the reason)
        ("gridwire-cloud", request, b"switch it on, please", "not a generic command"),
        ("gridwire-cloud", request, json.dumps({"name": "set_relay", "issuedAt": now}).encode(), "deviceId"),
        (CONCENTRATOR, answers, b"\xff\xfe\x00", "not a command response"),
        (LIGHT, light, json.dumps({"commandId": sent, "deviceId": LIGHT, "status": "DONE",
                                   "completedAt": now}).encode(), "status"),
        (CONCENTRATOR, answers, _response(str(uuid.uuid4()), METER), "never sent"),
        # A real command, answered in the name of another device.
        (CONCENTRATOR, answers, _response(sent, METER, CommandStatus.FAILED), f"was for {LIGHT!r}"),
        (LIGHT, light, _response(sent, LIGHT, CommandStatus.SENT), "not SENT"),
    ]
    for username, topic, payload, _ in bad:
        async with session_for(stack.broker, username) as publisher:
            await publisher.publish(topic, payload, qos=1)

    await wait_for(lambda: sum(core.consumer.dead_lettered for core in stack.cores) == len(bad), timeout=20,
                   what=f"{len(bad)} dead letters")
    letters = await stack.dead_letters.list()
    assert {d.consumer for d in letters} == {"core"}
    # Handled concurrently, so in any order: each bad message is there once, with its reason.
    for _, topic, payload, reason in bad:
        kept = _kept(payload)
        found = [d for d in letters if d.topic == topic and d.payload == kept and reason in d.reason]
        assert len(found) == 1, (topic, payload, reason, [(d.topic, d.payload, d.reason) for d in letters])
    # Nothing a bad answer said changed the command it named.
    assert (await stack.store.get(sent)).status is CommandStatus.SUCCEEDED  # type: ignore[union-attr]

    # The core goes on: the next request is served as before.
    await _light_status(stack)
    assert stack.light.commands_handled == 2
