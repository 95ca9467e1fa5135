"""Webhooks: signed with the organisation's secret (sealed at rest, opened only to sign), stored in
the outbox, retried, through the whole platform."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text

from broker.sealing import KeyRing, new_key
from broker.session import Backoff
from cloud.migrations import migrate
from cloud.notify.delivery import DeliveryPolicy, WebhookDelivery
from cloud.notify.models import DeliveryState
from cloud.notify.outbox import StoredDelivery
from cloud.notify.signing import sign, verify
from cloud.notify.webhook import Verdict, WebhookSender
from cloud.registry import OrganisationCreate, Registry, webhook_secrets
from tests.cloud.core.harness import LIGHT, Stack, platform
from tests.cloud.core.webhook_server import WebhookServer, webhook_server
from tests.fixtures.mosquitto import MosquittoServer
from tests.fixtures.waiting import poll_until, wait_for

SECRET = "s3cret-for-webhook-tests"
SEALING = KeyRing.parse(new_key("hooks"))


@given(secret=st.text(min_size=16, max_size=64), body=st.binary(max_size=512), other=st.binary(max_size=512))
def test_signature_verifies_only_its_own_body(secret: str, body: bytes, other: bytes) -> None:
    header = sign(secret, body)
    assert header.startswith("sha256=") and verify(secret, body, header)
    assert verify(secret, other, header) is (other == body)
    assert not verify(secret + "x", body, header)


@asynccontextmanager
async def hooked(tmp_path: Path, hook: WebhookServer, *, max_attempts: int) -> AsyncIterator[WebhookSender]:
    """A registry with org-h (webhook ``hook``) and org-none (no webhook), and a running delivery loop."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'hooks.db'}"
    await migrate(url)
    async with Registry(url=url, sealing=SEALING) as registry:
        await registry.add_organisation(OrganisationCreate(identification="org-h", name="Hooked",
                                                           webhook_url=hook.url, webhook_secret=SECRET))
        await registry.add_organisation(OrganisationCreate(identification="org-none", name="No hook"))
        sender = WebhookSender(engine=registry.engine, sealing=SEALING)
        delivery = WebhookDelivery(sender=sender, policy=DeliveryPolicy(
            max_attempts=max_attempts, backoff=Backoff(initial=0.02, maximum=0.1), poll_interval=0.05))
        delivery.start()
        try:
            yield sender
        finally:
            await delivery.close()
            await sender.close()


async def outbox_until(sender: WebhookSender, check: Callable[[list[StoredDelivery]], bool], *,
                       what: str, timeout: float = 10.0) -> None:
    """Wait until ``check`` holds for the outbox's rows; fail the test with ``what`` on timeout."""
    await poll_until(sender.outbox.all, check, timeout=timeout, what=what)


async def test_delivery_retries_until_accepted_under_one_delivery_id(tmp_path: Path) -> None:
    async with webhook_server(script=[503, 500]) as hook, hooked(tmp_path, hook, max_attempts=4) as sender:
        body = b'{"hello": "world"}'
        ident = await sender.submit("org-h", body, event="test.event")
        assert ident is not None
        assert await sender.submit("org-none", body) is None  # no webhook: nothing stored
        await outbox_until(sender, lambda rows: rows[0].state is DeliveryState.DELIVERED, what="delivered")
        rows = await sender.outbox.all()
    assert [r.organisation for r in rows] == ["org-h"]  # org-none has no webhook: nothing stored
    row = rows[0]
    assert row.id == ident and hook.accepted == [ident]
    assert row.attempts == 3 and row.last_error == "HTTP 500"
    assert len(hook.received) == 3
    for got in hook.received:
        assert got.path == "/hooks/gridwire" and got.body == body
        assert verify(SECRET, got.body, got.headers["x-gridwire-signature"])
        assert got.headers["x-gridwire-event"] == "test.event"
        assert got.headers["x-gridwire-delivery"] == ident  # the same id on every attempt


async def test_delivery_gives_up_on_a_refusal_and_after_max_attempts(tmp_path: Path) -> None:
    async with webhook_server(script=[400, 503, 503, 503]) as hook, hooked(tmp_path, hook, max_attempts=3) as sender:
        refused = await sender.submit("org-h", b'{"n": 1}')  # 400: the receiver refuses; not retried
        assert refused is not None
        await wait_for(lambda: len(hook.received) == 1, timeout=10, what="the refused POST")
        exhausted = await sender.submit("org-h", b'{"n": 2}')  # 503 three times
        assert exhausted is not None

        await outbox_until(sender, lambda rows: all(r.state is not DeliveryState.PENDING for r in rows),
                           what="both given up")
        first, second = await sender.outbox.get(refused), await sender.outbox.get(exhausted)
    assert first is not None and first.state is DeliveryState.FAILED
    assert first.attempts == 1 and first.last_error == "HTTP 400"
    assert second is not None and second.state is DeliveryState.FAILED
    assert second.attempts == 3 and second.last_error == "gave up after 3 attempts: HTTP 503"
    assert len(hook.received) == 4 and hook.accepted == []


async def test_platform_result_reaches_the_webhook_signed(shared_mosquitto: MosquittoServer, tmp_path: Path) -> None:
    async with webhook_server(script=[502]) as hook:
        async with platform(shared_mosquitto, f"sqlite+aiosqlite:///{tmp_path / 'p.db'}", webhook_url=hook.url,
                            webhook_secret=SECRET, sealing=SEALING) as stack:
            stack: Stack
            answer = await stack.post(f"/v1/publiclighting/devices/{LIGHT}/light", {"on": True, "dimLevel": 55})
            correlation = answer.json()["correlationId"]
            async with asyncio.timeout(10):
                await hook.delivered.wait()
    assert len(hook.received) == 2  # a 502 first, then the retry
    delivered = hook.received[-1]
    assert verify(SECRET, delivered.body, delivered.headers["x-gridwire-signature"])
    assert delivered.headers["x-gridwire-delivery"] == hook.received[0].headers["x-gridwire-delivery"]
    payload = json.loads(delivered.body)
    assert payload["correlationId"] == correlation and payload["status"] == "SUCCEEDED"
    assert payload["result"]["dimLevel"] == 55 and delivered.headers["x-gridwire-event"] == "publiclighting.setLight"


async def test_a_sealed_secret_signs_deliveries_that_verify_before_and_after_a_key_rotation(registry_url: str) -> None:
    await migrate(registry_url)
    async with webhook_server() as hook, Registry(url=registry_url, sealing=SEALING) as registry:
        await registry.add_organisation(OrganisationCreate(identification="org-h", name="Hooked",
                                                           webhook_url=hook.url, webhook_secret=SECRET))

        async def at_rest() -> str:
            async with registry.engine.connect() as conn:
                return (await conn.execute(text("SELECT webhook_secret FROM organisation"))).scalar_one()

        assert (await at_rest()).startswith("sealed:v1:hooks:") and SECRET not in await at_rest()

        async def attempt(ring: KeyRing | None, delivery: str) -> Verdict:
            sender = WebhookSender(engine=registry.engine, sealing=ring)
            try:
                target = await sender.target("org-h")
                assert target is not None and SECRET not in repr(target)
                outcome = await sender.post(target, b'{"n": "%s"}' % delivery.encode(), event="test.event",
                                            delivery=delivery)
            finally:
                await sender.close()
            if outcome.verdict is Verdict.RETRY:
                assert "the webhook secret cannot be opened" in outcome.reason and SECRET not in outcome.reason
            return outcome.verdict

        # No key, or another key under the same id: nothing is sent, the delivery is tried again later.
        assert await attempt(None, "d-none") is Verdict.RETRY
        assert await attempt(KeyRing.parse(new_key("hooks")), "d-other") is Verdict.RETRY
        assert hook.received == []

        rotated = KeyRing(KeyRing.parse(new_key("next")).keys + SEALING.keys)  # the new key first
        assert await attempt(SEALING, "d-1") is Verdict.DELIVERED
        assert await attempt(rotated, "d-2") is Verdict.DELIVERED  # sealed with the old key: still opens
        assert await webhook_secrets.reseal(registry.engine, rotated) == 1
        assert (await at_rest()).startswith("sealed:v1:next:")
        only_new = KeyRing(rotated.keys[:1])
        assert await attempt(only_new, "d-3") is Verdict.DELIVERED  # the old key dropped
        assert await attempt(SEALING, "d-old") is Verdict.RETRY  # and it no longer opens the secret
    assert [got.headers["x-gridwire-delivery"] for got in hook.received] == ["d-1", "d-2", "d-3"]
    for got in hook.received:
        assert verify(SECRET, got.body, got.headers["x-gridwire-signature"]), got.headers
