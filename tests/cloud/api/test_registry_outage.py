"""The registry's PostgreSQL stopped under a running API: every operation that checks a
credential, and the claim exchange, answers 503 with ``Retry-After`` and the reason in the error
format, never a 500;
the process keeps serving, and once PostgreSQL is back it answers as before (reads and writes),
with no restart. ``/healthz`` says so too: 503 naming the registry while it is down, 200 after.
A real cluster, stopped and started again mid-test."""

from __future__ import annotations

import asyncio
import re
import socket

import httpx
from fastapi import APIRouter
from sqlalchemy import text

from cloud.api import create_app
from cloud.api.errors import RETRY_AFTER_SECONDS
from cloud.runtime import database_engine
from cloud.settings import DatabaseSettings, InfluxSettings
from tests.cloud.api.conftest import make_settings
from tests.cloud.api.platform_rig import platform
from tests.cloud.platform.test_platform import platform_settings
from tests.fixtures.influx import InfluxServer
from tests.fixtures.mosquitto import MosquittoServer
from tests.fixtures.postgres import StoppablePostgres

REASON = "the registry database is unreachable; retry later"
# Operations that check no credential: the liveness check (asserted on its own) and the claim
# exchange, which refuses an empty body before it looks anything up.
PUBLIC = {("get", "/healthz"), ("post", "/v1/installation/provision")}


async def test_every_operation_answers_503_while_postgresql_is_down_and_serves_again_after(
        mosquitto: MosquittoServer, stoppable_postgres: StoppablePostgres, influxd: InfluxServer) -> None:
    url, cluster = stoppable_postgres.url, stoppable_postgres.cluster
    settings = platform_settings(mosquitto, url, database=DatabaseSettings(url=url, pool_size=2),
                                 influx=InfluxSettings(url=influxd.url, create_database=False))
    async with platform(settings, url) as rig:
        http, admin = rig.http, rig.admin
        assert (await http.get("/v1/admin/organisations", headers=admin)).status_code == 200
        healthy = await http.get("/healthz")
        assert healthy.status_code == 200, healthy.text
        assert healthy.json() == {"status": "ok", "influx": healthy.json()["influx"], "registry": "ok"}
        document = (await http.get("/openapi.json")).json()
        await rig.registry.engine.dispose()  # the test's own pool: only the API's meets the outage

        await asyncio.to_thread(cluster.stop)
        answered: dict[str, int] = {}
        for path, operations in document["paths"].items():
            concrete = re.sub(r"\{[^}]+\}", "x1", path)
            for method, operation in operations.items():
                body = {} if "requestBody" in operation else None
                answer = await http.request(method, concrete, headers=admin, json=body)
                answered[f"{method.upper()} {path}"] = answer.status_code
                if (method, path) in PUBLIC:
                    assert answer.status_code != 500, (method, path, answer.text)
                    continue
                # The first of these met the pool's connections broken, the others a refused connect.
                assert answer.status_code == 503, (method, path, answer.text)
                assert answer.json() == {"detail": REASON}, (method, path)
                assert answer.headers["retry-after"] == str(RETRY_AFTER_SECONDS)
                assert "503" in operation["responses"], (method, path)  # and the document says so
        assert len(answered) > 80 and 500 not in answered.values()
        health = await http.get("/healthz")  # the liveness check names the dependency down
        assert health.status_code == 503 and health.headers["retry-after"] == str(RETRY_AFTER_SECONDS)
        assert health.json() == {"detail": {"status": "degraded", "influx": healthy.json()["influx"],
                                            "registry": "unavailable: unreachable"}}
        # The claim exchange, given a claim to look up, meets the registry down too.
        redeem = await http.post("/v1/installation/provision", json={"claim": "a-claim", "csr": "a-csr"})
        assert (redeem.status_code, redeem.json()) == (503, {"detail": REASON})
        assert redeem.headers["retry-after"] == str(RETRY_AFTER_SECONDS)

        await asyncio.to_thread(cluster.start)
        assert (await http.get("/healthz")).json() == healthy.json()  # 200 again, no restart
        listed = await http.get("/v1/admin/organisations", headers=admin)
        assert listed.status_code == 200, listed.text
        assert [o["identification"] for o in listed.json()] == ["ops"]
        made = await http.post("/v1/admin/organisations", headers=admin,
                               json={"identification": "org-after", "name": "Made after the outage"})
        assert made.status_code == 201, made.text
        assert (await http.get("/v1/admin/organisations/org-after", headers=admin)).status_code == 200


async def test_a_registry_host_that_never_answers_is_503_after_the_connect_timeout() -> None:
    """A host that takes the connection and says nothing (a listening socket never accepted: the
    kernel completes the handshake) answers 503 after GRIDWIRE_DATABASE_CONNECT_TIMEOUT, not
    after asyncpg's own 60 s."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"postgresql+asyncpg://gridwire:none@127.0.0.1:{silent.getsockname()[1]}/gridwire"
        engine = database_engine("api", DatabaseSettings(url=url, connect_timeout=1.0))
        router = APIRouter()

        @router.get("/v1/registry-check")
        async def check() -> None:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))

        app = create_app(settings=make_settings(), extra_routers=[router])
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
                async with asyncio.timeout(30):  # well short of asyncpg's 60 s
                    answer = await client.get("/v1/registry-check")
        finally:
            await engine.dispose()
    assert (answer.status_code, answer.json()) == (503, {"detail": REASON})
    assert answer.headers["retry-after"] == str(RETRY_AFTER_SECONDS)
