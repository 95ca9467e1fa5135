"""The core's command lifecycle on a running platform: refusals, retries, timeouts, expiry, scale-out."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from broker import topics
from broker.schemas.command import GenericCommand
from broker.session import publish_properties
from tests.cloud.core.harness import LIGHT, METER, ORG_B, Inbox, Stack, json_of, platform, session_for
from tests.fixtures.mosquitto import MosquittoServer
from tests.fixtures.waiting import poll_until


async def _accepted(stack: Stack, path: str, body: dict | None = None, **params: object) -> str:
    answer = await stack.post(path, body, **params)
    assert answer.status_code == 202, answer.text
    return answer.json()["correlationId"]


async def test_api_refuses_unauthorised_organisation_and_sends_nothing(stack: Stack) -> None:
    answer = await stack.post(f"/v1/publiclighting/devices/{LIGHT}/light", {"on": True}, org=ORG_B)
    assert answer.status_code == 403
    assert "needs one of" in answer.json()["detail"] and "MONITORING" in answer.json()["detail"]
    unknown = await stack.post("/v1/smartmetering/devices/no-such-meter/actualReads")
    assert unknown.status_code == 403 and "not registered" in unknown.json()["detail"]
    # A permitted request afterwards is the only thing the light ever sees.
    correlation = await _accepted(stack, f"/v1/publiclighting/devices/{LIGHT}/status")
    assert (await stack.notification(correlation))["status"] == "SUCCEEDED"
    assert stack.light.commands_handled == 1
    assert sum(core.commands_accepted for core in stack.cores) == 1


async def test_core_refuses_command_that_bypassed_the_api(stack: Stack) -> None:
    inbox = Inbox()
    async with session_for(stack.broker, "gridwire-cloud") as spy:
        await spy.subscribe("core/response/org-b", inbox.handler)
        now = datetime.now(UTC)
        command = GenericCommand(deviceId=LIGHT, name="set_relay", parameters={"index": 1, "closed": True},
                                 issuedAt=now, expiresAt=now + timedelta(seconds=30))
        await spy.publish(topics.core_topic("request", ORG_B), command.to_wire(),
                          properties=publish_properties(correlation_data=command.correlation_data()))
        answer = json_of(await inbox.wait_for(lambda m: True))
    assert answer["status"] == "FAILED" and answer["error"]["code"] == "NOT_AUTHORISED"
    stored = await stack.store.get(str(command.command_id))
    assert stored is not None and stored.status == "FAILED" and stored.attempts == 0 and stored.sent_at is None
    assert stack.light.commands_handled == 0


async def test_transient_failure_is_retried_then_succeeds(stack: Stack) -> None:
    stack.meter.fail_transiently = 2
    correlation = await _accepted(stack, f"/v1/smartmetering/devices/{METER}/actualReads")
    note = await stack.notification(correlation)
    assert note["status"] == "SUCCEEDED" and note["result"]["OBIS_1.8.1"] == 1234.5
    result = await stack.result("smartmetering", correlation)
    assert result["commands"][0]["attempts"] == 3
    assert stack.meter.calls == ["read_now"] * 3
    device = await stack.registry.get_device(METER)
    assert device.comm_failure_count == 2 and device.comm_success_count == 1


async def test_transient_failures_beyond_the_attempts_fail(stack: Stack) -> None:
    stack.meter.fail_transiently = 10
    correlation = await _accepted(stack, f"/v1/smartmetering/devices/{METER}/actualReads")
    note = await stack.notification(correlation)
    assert note["status"] == "FAILED" and note["error"]["code"] == "DEVICE_UNREACHABLE"
    assert note["error"]["transient"] is True
    assert stack.meter.calls == ["read_now"] * 3


async def test_stopped_concentrator_times_out_and_never_runs_the_expired_command(stack: Stack) -> None:
    await stack.stop_concentrator()
    sent = await _accepted(stack, f"/v1/smartmetering/devices/{METER}/disconnect", ttlSeconds=4)
    # Sent (and holding the meter) before the next is asked for, whatever the machine's load.
    await poll_until(lambda: stack.store.of_request(sent), lambda records: records and records[0].sent_at is not None,
                     timeout=4, what="the disconnect to be sent")
    # Queued behind the first (DLMS: one command at a time), so never sent before its TTL passed.
    waiting = await _accepted(stack, f"/v1/smartmetering/devices/{METER}/firmwareVersion", ttlSeconds=1)
    timed_out = await stack.notification(sent)
    expired = await stack.notification(waiting)
    assert timed_out["status"] == "TIMEOUT" and timed_out["error"]["code"] == "TIMEOUT"
    assert expired["status"] == "EXPIRED"
    assert (await stack.store.of_request(waiting))[0].sent_at is None

    await stack.start_concentrator()
    fresh = await _accepted(stack, f"/v1/smartmetering/devices/{METER}/actualReads")
    assert (await stack.notification(fresh))["status"] == "SUCCEEDED"
    # The disconnect waited in the broker for the concentrator; it had expired, so it never ran.
    assert stack.meter.calls == ["read_now"] and stack.meter.breaker_closed is True
    assert (await stack.result("smartmetering", sent))["status"] == "TIMEOUT"


async def test_two_core_processes_handle_each_command_once(shared_mosquitto: MosquittoServer,
                                                           sqlite_url: str) -> None:
    async with platform(shared_mosquitto, sqlite_url, cores=2) as stack:
        correlations = []
        for i in range(12):
            correlations.append(await _accepted(stack, f"/v1/publiclighting/devices/{LIGHT}/light",
                                                {"on": True, "dimLevel": 10 + i}))
        notes = await asyncio.gather(*(stack.notification(c) for c in correlations))
        assert {n["status"] for n in notes} == {"SUCCEEDED"}
        assert stack.light.commands_handled == 24
        counts = [core.commands_accepted for core in stack.cores]
        assert sum(counts) == 24 and all(count > 0 for count in counts)
        for correlation in correlations:
            assert [c["attempts"] for c in (await stack.result("publiclighting", correlation))["commands"]] == [1, 1]
