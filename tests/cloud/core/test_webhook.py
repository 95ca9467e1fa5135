"""Webhooks: signed with the organisation's secret, retried with backoff, through the whole platform."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from broker.session import Backoff
from cloud.notify.signing import sign, verify
from cloud.notify.webhook import WebhookSender
from cloud.registry import OrganisationCreate, Registry, migrate
from tests.cloud.core.harness import LIGHT, Stack, platform
from tests.cloud.core.webhook_server import webhook_server
from tests.fixtures.mosquitto import MosquittoServer

SECRET = "s3cret-for-webhook-tests"


@given(secret=st.text(min_size=16, max_size=64), body=st.binary(max_size=512), other=st.binary(max_size=512))
def test_signature_verifies_only_its_own_body(secret: str, body: bytes, other: bytes) -> None:
    header = sign(secret, body)
    assert header.startswith("sha256=") and verify(secret, body, header)
    assert verify(secret, other, header) is (other == body)
    assert not verify(secret + "x", body, header)


async def test_sender_retries_until_accepted(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'hooks.db'}"
    await migrate(url)
    async with webhook_server(script=[503, 500]) as hook, Registry(url=url) as registry:
        await registry.add_organisation(OrganisationCreate(identification="org-h", name="Hooked",
                                                           webhook_url=hook.url, webhook_secret=SECRET))
        await registry.add_organisation(OrganisationCreate(identification="org-none", name="No hook"))
        sender = WebhookSender(engine=registry.engine, backoff=Backoff(initial=0.02, maximum=0.1), max_attempts=4)
        try:
            body = b'{"hello": "world"}'
            assert await sender.send("org-h", body, event="test.event") is True
            assert await sender.send("org-none", body) is False
        finally:
            await sender.close()
    assert len(hook.received) == 3
    for got in hook.received:
        assert got.path == "/hooks/gridwire" and got.body == body
        assert verify(SECRET, got.body, got.headers["x-gridwire-signature"])
        assert got.headers["x-gridwire-event"] == "test.event"


async def test_sender_gives_up_on_a_refusal_and_after_max_attempts(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'hooks.db'}"
    await migrate(url)
    async with webhook_server(script=[400, 503, 503, 503]) as hook, Registry(url=url) as registry:
        await registry.add_organisation(OrganisationCreate(identification="org-h", name="Hooked",
                                                           webhook_url=hook.url, webhook_secret=SECRET))
        sender = WebhookSender(engine=registry.engine, backoff=Backoff(initial=0.02, maximum=0.05), max_attempts=3)
        try:
            assert await sender.send("org-h", b"{}") is False  # 400: the receiver refuses; not retried
            assert await sender.send("org-h", b"{}") is False  # 503 three times
        finally:
            await sender.close()
    assert len(hook.received) == 4


async def test_platform_result_reaches_the_webhook_signed(shared_mosquitto: MosquittoServer, tmp_path: Path) -> None:
    async with webhook_server(script=[502]) as hook:
        async with platform(shared_mosquitto, f"sqlite+aiosqlite:///{tmp_path / 'p.db'}", webhook_url=hook.url,
                            webhook_secret=SECRET) as stack:
            stack: Stack
            answer = await stack.post(f"/v1/publiclighting/devices/{LIGHT}/light", {"on": True, "dimLevel": 55})
            correlation = answer.json()["correlationId"]
            async with asyncio.timeout(10):
                await hook.delivered.wait()
    assert len(hook.received) == 2  # a 502 first, then the retry
    delivered = hook.received[-1]
    assert verify(SECRET, delivered.body, delivered.headers["x-gridwire-signature"])
    payload = json.loads(delivered.body)
    assert payload["correlationId"] == correlation and payload["status"] == "SUCCEEDED"
    assert payload["result"]["dimLevel"] == 55 and delivered.headers["x-gridwire-event"] == "publiclighting.setLight"
