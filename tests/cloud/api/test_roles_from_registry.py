"""Roles come from the registry, never from the token: the assembled platform app on uvicorn.

A USER organisation whose token carries ``scope: admin`` (an HS256 token signed with the
platform's own secret, so it verifies) must not read or delete another organisation's
readings, nor read the dead letters. Every refusal is checked together with "nothing changed":
the owner still reads all its readings, the dead letter is still there.
"""

from __future__ import annotations

from datetime import timedelta

import httpx

from broker.schemas import DeadLetter
from cloud.deadletters import DeadLetterStore
from cloud.registry import DeviceCreate, OrganisationCreate, PlatformRole, Registry
from cloud.settings import InfluxSettings
from cloud.store import InfluxStore
from tests.cloud.platform.test_platform import bearer, platform_settings, serve_with_lifespan
from tests.cloud.store.factories import T0, series
from tests.fixtures.influx import InfluxServer
from tests.fixtures.mosquitto import MosquittoServer

WINDOW = {"readingTimeStart": T0.isoformat(), "readingTimeEnd": (T0 + timedelta(days=1)).isoformat()}


async def test_a_user_with_an_admin_scope_in_its_token_gets_no_admin_rights(
        mosquitto: MosquittoServer, influxd: InfluxServer, influx_db: str, registry_url: str) -> None:
    settings = platform_settings(mosquitto, registry_url, min_result_rows=1,
                                 influx=InfluxSettings(url=influxd.url, database=influx_db))
    async with serve_with_lifespan(settings) as base, httpx.AsyncClient(base_url=base, timeout=10) as http:
        async with Registry(url=registry_url) as registry:
            for org, role in (("ops", PlatformRole.ADMIN), ("org-a", PlatformRole.USER), ("org-b", PlatformRole.USER)):
                await registry.add_organisation(OrganisationCreate(identification=org, name=org, role=role))
            await registry.create_device(DeviceCreate(identification="meter-a", device_type="SMART_METER",
                                                      protocol="DSMR_P1"), owner="org-a")
            letters = DeadLetterStore(engine=registry.engine)
            await letters.add(DeadLetter.of(topic="concentrator/c1/smartMeterMessage/meter-a/meterReading",
                                            payload=b"not json", reason="unparsable", consumer="ingest", received_at=T0))
        async with InfluxStore(url=influxd.url, database=influx_db) as store:
            await store.write_readings(series(["meter-a"], 5))

        async def owners_readings() -> list[str]:
            answer = await http.post("/v1/meterReadings", json=WINDOW, headers=bearer("org-a"))
            assert answer.status_code == 200, answer.text
            return [r["meterReadingIdentifier"] for r in answer.json()["meterReadings"]]

        before = await owners_readings()
        assert len(before) == 5
        intruder = bearer("org-b", "admin")

        read = await http.post("/v1/meterReadings", json=WINDOW, headers=intruder)
        assert read.status_code == 422, read.text  # it sees no readings: fewer than the privacy minimum
        assert "meterReadings" not in read.json()
        deleted = await http.delete("/v1/meterReadings", params={"id": before[0]}, headers=intruder)
        assert deleted.status_code == 404, deleted.text
        assert await owners_readings() == before

        dead = await http.get("/v1/deadLetters", headers=intruder)
        assert dead.status_code == 403, dead.text
        assert "deadLetters" not in dead.json()
        # The platform administrator (by the registry) does see it, with or without the scope.
        for headers in (bearer("ops"), bearer("ops", "admin")):
            seen = await http.get("/v1/deadLetters", headers=headers)
            assert seen.status_code == 200, seen.text
            assert [d["reason"] for d in seen.json()["deadLetters"]] == ["unparsable"]
