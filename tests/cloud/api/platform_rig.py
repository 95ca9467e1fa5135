"""The assembled platform app on a real uvicorn with a clock the test moves, bootstrapped:
an administrator (``ops``) with an API key, as ``gridwire admin init`` leaves it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx

from cloud.api.process import create_platform_app
from cloud.platform import PlatformSettings
from cloud.registry import Registry
from cloud.registry.apikeys import ApiKeys
from tests.cloud.api.conftest import Clock
from tests.cloud.core.harness import serve


def key(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Rig:
    http: httpx.AsyncClient
    registry: Registry
    clock: Clock
    admin: dict[str, str]  # the administrator's headers

    async def org(self, identification: str) -> dict[str, str]:
        """A USER organisation, and the headers of an unlimited key of its own."""
        made = await self.http.post("/v1/admin/organisations", headers=self.admin,
                                    json={"identification": identification, "name": identification})
        assert made.status_code == 201, made.text
        issued = await self.http.post(f"/v1/organisations/{identification}/apiKeys", headers=self.admin,
                                      json={"name": "main"})
        assert issued.status_code == 201, issued.text
        return key(issued.json()["token"])


@asynccontextmanager
async def platform(settings: PlatformSettings, url: str) -> AsyncIterator[Rig]:
    clock = Clock()
    async with serve(create_platform_app(settings, clock=clock), lifespan="on") as base, \
            httpx.AsyncClient(base_url=base, timeout=10) as http, Registry(url=url) as registry:
        issued = await ApiKeys(registry.engine).bootstrap("ops", "Platform operator")
        yield Rig(http=http, registry=registry, clock=clock, admin=key(issued.token))
