"""POST/DELETE /v1/meterReadings: paging, filters, privacy rule, auth and organisation isolation."""

from __future__ import annotations

from datetime import timedelta

import pytest

from broker.schemas import MeterReading
from tests.cloud.api.conftest import Api
from tests.cloud.store.factories import T0, reading, series

ABC = ["A", "B", "C"]


def window(**extra: object) -> dict:
    return {"readingTimeStart": T0.isoformat(), "readingTimeEnd": (T0 + timedelta(days=1)).isoformat(), **extra}


@pytest.fixture
async def loaded(api: Api) -> Api:
    await api.store.write_readings(series(ABC, 10))  # 30 readings, energy 100..109 per meter
    await api.store.write_readings(series(["Z"], 25))  # another organisation's meter
    return api


async def test_json_pages(loaded: Api) -> None:
    headers = loaded.token("org1", meters=ABC)
    first = await loaded.client.post("/v1/meterReadings", json=window(pageSize=20), headers=headers)
    assert first.status_code == 200, first.text
    body = first.json()
    assert (body["totalRows"], body["pageNumber"], body["pageSize"], len(body["meterReadings"])) == (30, 1, 20, 20)
    parsed = [MeterReading.model_validate(r) for r in body["meterReadings"]]
    assert parsed[0].reading_time.utcoffset() == timedelta(0)
    assert parsed[0].property_values[0].operational_property.property_id.startswith("OBIS_")
    assert body["meterReadings"][0]["readingTime"].endswith("Z")
    second = (await loaded.client.post("/v1/meterReadings", json=window(pageSize=20, pageNumber=2),
                                       headers=headers)).json()
    assert len(second["meterReadings"]) == 10
    ids = {r["meterReadingIdentifier"] for r in body["meterReadings"] + second["meterReadings"]}
    assert len(ids) == 30
    past = await loaded.client.post("/v1/meterReadings", json=window(pageSize=20, pageNumber=3), headers=headers)
    assert past.status_code == 422 and "past the last page (2)" in past.json()["detail"]


async def test_max_rows_caps_the_answer(loaded: Api) -> None:
    body = (await loaded.client.post("/v1/meterReadings", json=window(maxRows=25, pageSize=20, pageNumber=2),
                                     headers=loaded.token("org1", meters=ABC))).json()
    assert body["totalRows"] == 25 and len(body["meterReadings"]) == 5


async def test_filters(loaded: Api) -> None:
    headers = loaded.token("ops", scopes=["admin"])
    await loaded.store.write_readings([reading(f"T{i}", T0, energy=None, text="alarm" if i < 21 else "ok")
                                       for i in range(25)])
    await loaded.store.write_readings([reading(f"E{i}", T0, energy=555.5) for i in range(20)])

    async def total(*filters: dict, **extra: object) -> int:
        r = await loaded.client.post("/v1/meterReadings", json=window(operationalProperties=list(filters), **extra),
                                     headers=headers)
        assert r.status_code == 200, r.text
        return r.json()["totalRows"]

    assert await total() == 100
    assert await total({"propertyId": "OBIS_1.8.1", "numericalValueGreaterThan": 104.5}) == 15 + 20 + 20
    assert await total({"propertyId": "OBIS_1.8.1", "numericalValueLessThan": 106}) == 6 * 3 + 6
    assert await total({"propertyId": "OBIS_1.8.1", "numericalValueGreaterThan": 100,
                        "numericalValueLessThan": 106}, meterIndividualIds=["A", "B", "C", "Z"]) == 20
    # power is i % 7: values 1 and 2 occur 4 times per meter in 10 steps and 8 times in 25.
    assert await total({"propertyId": "OBIS_1.7.0", "numericalValueGreaterThan": 0},
                       {"propertyId": "OBIS_1.7.0", "numericalValueLessThan": 3}) == 4 * 3 + 8
    assert await total({"propertyId": "OBIS_1.8.1", "numericalValueEqualTo": 555.5}) == 20
    assert await total({"propertyId": "OBIS_0.0.96.13.0", "textValueEqualTo": "alarm"}) == 21


async def test_fewer_than_twenty_rows_are_refused(loaded: Api) -> None:
    headers = loaded.token("org1", meters=ABC)
    for request in (window(meterIndividualIds=["A"]), window(maxRows=19),
                    window(operationalProperties=[{"propertyId": "OBIS_1.8.1", "numericalValueGreaterThan": 105}])):
        r = await loaded.client.post("/v1/meterReadings", json=request, headers=headers)
        assert r.status_code == 422
        assert "fewer than 20 readings" in r.json()["detail"] and "privacy" in r.json()["detail"]


async def test_organisations_see_only_their_meters(loaded: Api) -> None:
    two = loaded.token("org2", meters=["A", "B"])
    r = await loaded.client.post("/v1/meterReadings", json=window(pageSize=50), headers=two)
    assert r.json()["totalRows"] == 20
    assert {x["meterIndividual"]["meterIndividualId"] for x in r.json()["meterReadings"]} == {"A", "B"}
    # Asking for a meter it may not read: those readings are simply not there.
    r = await loaded.client.post("/v1/meterReadings", json=window(meterIndividualIds=["A", "B", "Z"]), headers=two)
    assert r.json()["totalRows"] == 20
    r = await loaded.client.post("/v1/meterReadings", json=window(meterIndividualIds=["Z"]), headers=two)
    assert r.status_code == 422
    admin = await loaded.client.post("/v1/meterReadings", json=window(), headers=loaded.token("ops", scopes=["admin"]))
    assert admin.json()["totalRows"] == 55
    nobody = await loaded.client.post("/v1/meterReadings", json=window(), headers=loaded.token("org3"))
    assert nobody.status_code == 422


@pytest.mark.parametrize(("change", "reason"), [
    ({"readingTimeStart": "2026-03-01T00:00:00"}, "timezone"),
    ({"readingTimeEnd": "2026-02-01T00:00:00Z"}, "readingTimeStart is after readingTimeEnd"),
    ({"pageSize": 0}, "greater than or equal to 1"),
    ({"pageSize": 101}, "above the maximum of 100"),
    ({"responseFormat": "xml"}, "'json' or 'bulk'"),
    ({"operationalProperties": [{"propertyId": "OBIS_1.8.1"}]}, "gives no condition"),
    ({"operationalProperties": [{"propertyId": "reading_id", "numericalValueEqualTo": 1}]}, "reserved"),
    ({"meterIds": ["A"]}, "Extra inputs are not permitted"),
])
async def test_bad_requests_say_why(loaded: Api, change: dict, reason: str) -> None:
    r = await loaded.client.post("/v1/meterReadings", json=window(**change), headers=loaded.token("org1", meters=ABC))
    assert r.status_code == 422
    assert reason in r.text


async def test_missing_or_bad_token_is_401(loaded: Api) -> None:
    r = await loaded.client.post("/v1/meterReadings", json=window())
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
    r = await loaded.client.post("/v1/meterReadings", json=window(), headers={"Authorization": "Bearer nonsense"})
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
    expired = loaded.token("org1", meters=ABC, ttl=timedelta(seconds=30))
    loaded.clock.advance(31)
    r = await loaded.client.post("/v1/meterReadings", json=window(), headers=expired)
    assert r.status_code == 401 and "expired" in r.json()["detail"]
    r = await loaded.client.delete("/v1/meterReadings", params={"id": str(series(ABC, 1)[0].meter_reading_identifier)})
    assert r.status_code == 401


async def test_delete(loaded: Api) -> None:
    victim = series(ABC, 10)[3]  # meter A
    ident = str(victim.meter_reading_identifier)
    r = await loaded.client.delete("/v1/meterReadings", params={"id": ident}, headers=loaded.token("o", meters=["B"]))
    assert r.status_code == 404
    r = await loaded.client.delete("/v1/meterReadings", params={"id": ident}, headers=loaded.token("o", meters=["A"]))
    assert r.status_code == 204
    r = await loaded.client.delete("/v1/meterReadings", params={"id": ident}, headers=loaded.token("o", meters=["A"]))
    assert r.status_code == 404
    r = await loaded.client.delete("/v1/meterReadings", params={"id": "not-a-uuid"}, headers=loaded.token("o"))
    assert r.status_code == 422 and "UUID" in r.text
    left = (await loaded.client.post("/v1/meterReadings", json=window(pageSize=50),
                                     headers=loaded.token("org1", meters=ABC))).json()
    assert left["totalRows"] == 29 and ident not in {x["meterReadingIdentifier"] for x in left["meterReadings"]}
