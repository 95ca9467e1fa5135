"""The same end-to-end path with the registry and command store on PostgreSQL."""

from __future__ import annotations

from tests.cloud.core.harness import LIGHT, METER, platform
from tests.fixtures.mosquitto import MosquittoServer


async def test_light_and_meter_round_trip_on_postgres(shared_mosquitto: MosquittoServer, postgres_url: str) -> None:
    async with platform(shared_mosquitto, postgres_url, cores=2) as stack:
        light = await stack.post(f"/v1/publiclighting/devices/{LIGHT}/light", {"on": True, "dimLevel": 80})
        stack.meter.fail_transiently = 1
        meter = await stack.post(f"/v1/smartmetering/devices/{METER}/actualReads")
        assert light.status_code == meter.status_code == 202
        light_note = await stack.notification(light.json()["correlationId"])
        meter_note = await stack.notification(meter.json()["correlationId"])
        assert light_note["status"] == meter_note["status"] == "SUCCEEDED"
        assert light_note["result"]["dimLevel"] == 80 and meter_note["result"]["unit"] == "kWh"
        result = await stack.result("smartmetering", meter.json()["correlationId"])
        assert result["commands"][0]["attempts"] == 2
        assert (await stack.http.get(f"/v1/smartmetering/results/{meter.json()['correlationId']}",
                                     headers={"X-Org": "org-b"})).status_code == 404
