"""Each domain operation through every layer: API -> domain -> core -> device -> result and notification."""

from __future__ import annotations

from tests.cloud.core.harness import LIGHT, METER, Stack


async def _run(stack: Stack, domain: str, path: str, body: dict | None = None) -> tuple[dict, dict]:
    answer = await stack.post(f"/v1/{domain}/devices/{path}", body)
    assert answer.status_code == 202, answer.text
    correlation = answer.json()["correlationId"]
    assert answer.json()["resultUrl"] == f"/v1/{domain}/results/{correlation}"
    notification = await stack.notification(correlation)
    return notification, await stack.result(domain, correlation)


async def test_switch_street_light_on_dimmed(stack: Stack) -> None:
    note, result = await _run(stack, "publiclighting", f"{LIGHT}/light", {"on": True, "dimLevel": 40})
    assert note["_topic"] == "app/org-a/publiclighting/setLight"
    assert note["status"] == result["status"] == "SUCCEEDED"
    assert result["result"]["on"] is True and result["result"]["dimLevel"] == 40
    assert [c["name"] for c in result["commands"]] == ["set_relay", "set_dim_level"]
    assert stack.light.lights[LIGHT].relays[1] is True and stack.light.lights[LIGHT].dim_level == 40

    note, result = await _run(stack, "publiclighting", f"{LIGHT}/light", {"on": False})
    assert result["status"] == "SUCCEEDED" and result["result"]["on"] is False
    note, result = await _run(stack, "publiclighting", f"{LIGHT}/status")
    assert result["result"]["relays"] == [{"index": 1, "closed": False}]


async def test_smart_metering_operations(stack: Stack) -> None:
    _, result = await _run(stack, "smartmetering", f"{METER}/actualReads")
    assert result["status"] == "SUCCEEDED" and result["result"]["OBIS_1.8.1"] == 1234.5
    _, result = await _run(stack, "smartmetering", f"{METER}/disconnect")
    assert result["result"] == {"breakerClosed": False} and stack.meter.breaker_closed is False
    _, result = await _run(stack, "smartmetering", f"{METER}/reconnect")
    assert result["result"] == {"breakerClosed": True} and stack.meter.breaker_closed is True
    _, result = await _run(stack, "smartmetering", f"{METER}/synchronizeTime")
    assert result["result"] == {"clockSet": "concentrator"}
    _, result = await _run(stack, "smartmetering", f"{METER}/firmwareVersion")
    assert result["result"] == {"firmwareVersion": "4.2.1"}
    assert stack.meter.calls == ["read_now", "disconnect", "connect", "set_clock", "get_firmware_version"]

