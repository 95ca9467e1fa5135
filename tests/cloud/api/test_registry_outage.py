"""The registry's PostgreSQL stopped under a running API: every operation that checks a
credential, and the claim exchange, answers 503 with ``Retry-After`` and the reason in the error
format, never a 500;
the process keeps serving, and once PostgreSQL is back it answers as before (reads and writes),
with no restart. A real cluster, stopped and started again mid-test."""

from __future__ import annotations

import asyncio
import re

from cloud.api.errors import RETRY_AFTER_SECONDS
from cloud.settings import DatabaseSettings
from tests.cloud.api.platform_rig import platform
from tests.cloud.platform.test_platform import platform_settings
from tests.fixtures.mosquitto import MosquittoServer
from tests.fixtures.postgres import StoppablePostgres

REASON = "the registry database is unreachable; retry later"
# Operations that check no credential: the liveness check (InfluxDB's, absent here: a 503 of its
# own) and the claim exchange, which refuses an empty body before it looks anything up.
PUBLIC = {("get", "/healthz"), ("post", "/v1/installation/provision")}


async def test_every_operation_answers_503_while_postgresql_is_down_and_serves_again_after(
        mosquitto: MosquittoServer, stoppable_postgres: StoppablePostgres) -> None:
    url, cluster = stoppable_postgres.url, stoppable_postgres.cluster
    settings = platform_settings(mosquitto, url, database=DatabaseSettings(url=url, pool_size=2))
    async with platform(settings, url) as rig:
        http, admin = rig.http, rig.admin
        assert (await http.get("/v1/admin/organisations", headers=admin)).status_code == 200
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
        # The claim exchange, given a claim to look up, meets the registry down too.
        redeem = await http.post("/v1/installation/provision", json={"claim": "a-claim", "csr": "a-csr"})
        assert (redeem.status_code, redeem.json()) == (503, {"detail": REASON})
        assert redeem.headers["retry-after"] == str(RETRY_AFTER_SECONDS)

        await asyncio.to_thread(cluster.start)
        listed = await http.get("/v1/admin/organisations", headers=admin)
        assert listed.status_code == 200, listed.text
        assert [o["identification"] for o in listed.json()] == ["ops"]
        made = await http.post("/v1/admin/organisations", headers=admin,
                               json={"identification": "org-after", "name": "Made after the outage"})
        assert made.status_code == 201, made.text
        assert (await http.get("/v1/admin/organisations/org-after", headers=admin)).status_code == 200
