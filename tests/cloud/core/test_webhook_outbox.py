"""The durable webhook outbox on SQLite and PostgreSQL: nothing lost while a receiver or a sender is down.

Real parts: a real HTTP receiver on a local port, the real migrations, delivery loops in this
process and in a child process that is SIGKILLed in the middle of a POST.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path


from broker.sealing import KEY_ENV, KeyRing, new_key
from broker.session import Backoff
from cloud.migrations import migrate
from cloud.notify.delivery import DeliveryPolicy, WebhookDelivery
from cloud.notify.models import DeliveryState
from cloud.notify.outbox import StoredDelivery, WebhookOutbox
from cloud.notify.signing import verify
from cloud.notify.webhook import WebhookSender
from cloud.registry import OrganisationCreate, Registry
from tests.cloud.core.webhook_server import webhook_server
from tests.fixtures.procs import ManagedProcess, free_port
from tests.fixtures.waiting import poll_until, wait_for

SECRET = "s3cret-for-outbox-tests"
KEY = new_key("outbox")
SEALING = KeyRing.parse(KEY)
ORG = "org-h"
FAST = DeliveryPolicy(backoff=Backoff(initial=0.05, maximum=0.2), poll_interval=0.05)


@asynccontextmanager
async def registry_with_hook(url: str, hook_url: str) -> AsyncIterator[Registry]:
    await migrate(url)
    async with Registry(url=url, sealing=SEALING) as registry:
        await registry.add_organisation(OrganisationCreate(identification=ORG, name="Hooked", webhook_url=hook_url,
                                                           webhook_secret=SECRET))
        yield registry


async def outbox_until(outbox: WebhookOutbox, check: Callable[[list[StoredDelivery]], bool], *, what: str,
                       timeout: float = 20.0) -> list[StoredDelivery]:
    return await poll_until(outbox.all, check, timeout=timeout, what=what)


def all_delivered(rows: list[StoredDelivery]) -> bool:
    return all(r.state is DeliveryState.DELIVERED for r in rows)


async def submit_many(sender: WebhookSender, count: int) -> dict[str, bytes]:
    bodies = {}
    for n in range(count):
        body = b'{"n": %d}' % n
        ident = await sender.submit(ORG, body, event="test.event", key=f"request-{n}")
        assert ident is not None
        bodies[ident] = body
    return bodies


async def test_receiver_down_then_up_gets_every_notification(registry_url: str) -> None:
    port = free_port()
    hook_url = f"http://127.0.0.1:{port}/hooks/gridwire"
    async with registry_with_hook(registry_url, hook_url) as registry:
        sender = WebhookSender(engine=registry.engine, sealing=SEALING, timeout=1.0)
        delivery = WebhookDelivery(sender=sender, policy=FAST)
        delivery.start()
        try:
            bodies = await submit_many(sender, 10)
            # Nobody listens: every notification is tried and refused a connection, more than once.
            await outbox_until(sender.outbox, lambda rows: all(r.attempts >= 2 and r.state is DeliveryState.PENDING
                                                               for r in rows), what="failed attempts")
            async with webhook_server(port=port) as hook:
                rows = await outbox_until(sender.outbox, all_delivered, what="every notification delivered")
        finally:
            await delivery.close()
            await sender.close()
    assert {r.id for r in rows} == set(bodies) and all(r.last_error for r in rows)
    assert sorted(hook.accepted) == sorted(bodies)  # each once: nothing lost, nothing doubled
    for got in hook.received:
        ident = got.headers["x-gridwire-delivery"]
        assert got.body == bodies[ident] and verify(SECRET, got.body, got.headers["x-gridwire-signature"])


async def test_sender_killed_mid_post_leaves_its_notifications_to_another(registry_url: str, tmp_path: Path) -> None:
    gate = asyncio.Event()
    async with webhook_server(gate=gate) as hook, registry_with_hook(registry_url, hook.url) as registry:
        sender = WebhookSender(engine=registry.engine, sealing=SEALING)
        bodies = await submit_many(sender, 5)
        child = ManagedProcess(argv=[sys.executable, "-m", "tests.cloud.core.delivery_child", registry_url, "3", "1"],
                               log=tmp_path / "child.log", cwd=Path(__file__).resolve().parents[3],
                               env={KEY_ENV: KEY})
        child.start()
        try:
            # The receiver holds every POST open: the child is in the middle of sending all of them.
            await wait_for(lambda: {g.headers["x-gridwire-delivery"] for g in hook.received} == set(bodies),
                           timeout=30, what="the child's POSTs")
        finally:
            child.kill()
        held = await sender.outbox.all()
        gate.set()  # the receiver answers from now on
        assert all(r.state is DeliveryState.PENDING and r.claimed_by is not None for r in held)

        # Another loop (a restarted domain process) takes them once the dead child's lease runs out.
        delivery = WebhookDelivery(sender=sender, policy=FAST, worker="restarted")
        delivery.start()
        try:
            rows = await outbox_until(sender.outbox, all_delivered, what="delivery after the kill")
        finally:
            await delivery.close()
            await sender.close()
    assert {r.id for r in rows} == set(bodies) and all(r.attempts == 2 for r in rows)
    assert set(hook.accepted) == set(bodies)
    for got in hook.received:  # the same id for a notification, whoever sent it
        assert got.body == bodies[got.headers["x-gridwire-delivery"]]


async def test_two_loops_deliver_each_notification_once(registry_url: str) -> None:
    async with webhook_server() as hook, registry_with_hook(registry_url, hook.url) as registry:
        sender = WebhookSender(engine=registry.engine, sealing=SEALING)
        bodies = await submit_many(sender, 60)
        small = DeliveryPolicy(backoff=FAST.backoff, poll_interval=0.02, batch=4)
        loops = [WebhookDelivery(sender=sender, policy=small, worker=f"loop-{n}") for n in range(2)]
        claimed: list[list[str]] = [[], []]

        async def run(n: int) -> None:
            # Rounds by hand, so each loop's share is known.
            while len(hook.accepted) < len(bodies):
                claims = await sender.outbox.claim(worker=loops[n].worker, limit=4, lease=small.lease)
                claimed[n].extend(d.id for d in claims)
                await asyncio.gather(*(loops[n]._deliver(d) for d in claims))  # noqa: SLF001
                await asyncio.sleep(0)  # a turn for the other loop between rounds: both must claim some

        async with asyncio.timeout(30):
            await asyncio.gather(run(0), run(1))
        rows = await outbox_until(sender.outbox, all_delivered, what="all delivered")
        await sender.close()
    assert hook.accepted_counts() == {ident: 1 for ident in bodies}
    assert sorted(claimed[0] + claimed[1]) == sorted(bodies)  # no notification claimed twice
    assert claimed[0] and claimed[1] and all(r.attempts == 1 for r in rows)


async def test_same_key_is_stored_once_and_delivered_rows_are_purged(registry_url: str) -> None:
    async with registry_with_hook(registry_url, "http://127.0.0.1:9/unused") as registry:
        now = [datetime(2026, 1, 1, tzinfo=UTC)]
        outbox = WebhookOutbox(registry.engine, clock=lambda: now[0])
        first, added = await outbox.add(ORG, b"{}", event="e", key="correlation-1")
        again, added_again = await outbox.add(ORG, b"{}", event="e", key="correlation-1")
        assert (first, added, added_again) == (again, True, False)
        other, _ = await outbox.add(ORG, b"{}", event="e")
        claims = await outbox.claim(worker="w", limit=10, lease=timedelta(seconds=30))
        assert sorted(d.id for d in claims) == sorted([first, other])
        assert await outbox.claim(worker="x", limit=10, lease=timedelta(seconds=30)) == []  # leased
        assert await outbox.delivered(next(d for d in claims if d.id == first))
        assert await outbox.failed(next(d for d in claims if d.id == other), "HTTP 400")
        now[0] += timedelta(hours=2)
        assert await outbox.purge(older_than=timedelta(hours=3)) == 0
        now[0] += timedelta(hours=2)
        assert await outbox.purge(older_than=timedelta(hours=3)) == 1  # the DELIVERED one; FAILED stays
        assert [(r.id, r.state) for r in await outbox.all()] == [(other, DeliveryState.FAILED)]
