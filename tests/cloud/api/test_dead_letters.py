"""``GET /v1/deadLetters`` against a real SQLite dead-letter store: admin only, paged, since."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from broker.schemas import DeadLetter
from cloud.api import create_app
from cloud.auth import issue_token
from cloud.deadletters import DeadLetterStore
from cloud.settings import ApiSettings

SECRET = "dead-letter-test-secret-not-for-production"
T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


def auth(*scopes: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(secret=SECRET, org='ops', scopes=scopes)}"}


@pytest.fixture
async def client(dead_letters: DeadLetterStore) -> AsyncIterator[httpx.AsyncClient]:
    await dead_letters.add_many([
        DeadLetter.of(topic=f"concentrator/c1/smartMeterMessage/m{i}/meterReading", payload=f"bad {i}".encode(),
                      reason=f"reason {i}", received_at=T0 + timedelta(minutes=i), consumer="ingest")
        for i in range(5)])
    app = create_app(settings=ApiSettings(jwt_secret=SECRET), dead_letters=dead_letters)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test") as c:
        yield c


async def test_admin_lists_dead_letters_paged_and_since(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/deadLetters", headers=auth("admin"))
    assert r.status_code == 200
    page = r.json()
    assert [d["reason"] for d in page["deadLetters"]] == [f"reason {i}" for i in range(5)]
    assert page["deadLetters"][0]["receivedAt"].startswith("2026-01-05T08:00:00")
    assert page["deadLetters"][0]["payload"] == "bad 0" and page["nextOffset"] is None
    first = (await client.get("/v1/deadLetters", params={"limit": 2}, headers=auth("admin"))).json()
    assert [d["reason"] for d in first["deadLetters"]] == ["reason 0", "reason 1"] and first["nextOffset"] == 2
    second = (await client.get("/v1/deadLetters", params={"limit": 2, "offset": first["nextOffset"]},
                               headers=auth("admin"))).json()
    assert [d["reason"] for d in second["deadLetters"]] == ["reason 2", "reason 3"]
    since = (await client.get("/v1/deadLetters", params={"since": (T0 + timedelta(minutes=3)).isoformat()},
                              headers=auth("admin"))).json()
    assert [d["reason"] for d in since["deadLetters"]] == ["reason 3", "reason 4"]


async def test_only_admins_and_only_good_parameters(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v1/deadLetters")).status_code == 401
    refused = await client.get("/v1/deadLetters", headers=auth("read"))
    assert refused.status_code == 403 and "admin" in refused.json()["detail"]
    for params in ({"limit": 0}, {"limit": 100_000}, {"offset": -1}, {"since": "2026-01-05T08:00:00"},
                   {"since": "yesterday"}):
        assert (await client.get("/v1/deadLetters", params=params, headers=auth("admin"))).status_code == 422, params


async def test_without_a_store_it_is_503_with_a_reason() -> None:
    app = create_app(settings=ApiSettings(jwt_secret=SECRET))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test") as c:
        r = await c.get("/v1/deadLetters", headers=auth("admin"))
        assert r.status_code == 503 and "dead-letter store" in r.json()["detail"]
        assert (await c.get("/v1/deadLetters", headers=auth())).status_code == 403


async def test_oldest_first_by_receipt_not_by_arrival(client: httpx.AsyncClient, dead_letters: DeadLetterStore) -> None:
    # Stored after the fixture's five, but received before them (a letter relayed late from an edge).
    await dead_letters.add_many([
        DeadLetter.of(topic="concentrator/c1/smartMeterMessage/late/meterReading", payload=b"late",
                      reason=f"late {i}", received_at=T0 - timedelta(minutes=10 - i), consumer="ingest")
        for i in (2, 1)])
    page = (await client.get("/v1/deadLetters", headers=auth("admin"))).json()
    reasons = [d["reason"] for d in page["deadLetters"]]
    assert reasons == ["late 1", "late 2", *(f"reason {i}" for i in range(5))]
    received = [d["receivedAt"] for d in page["deadLetters"]]
    assert received == sorted(received)
