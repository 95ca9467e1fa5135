"""Events monitoring raises itself reach the subscriptions' webhooks, as device events do: a real
concentrator process, Mosquitto, the monitor and domain processes as the platform runs them,
PostgreSQL, the web API and a webhook receiver.

SIGKILL the concentrator: its will makes the monitor raise CONCENTRATOR_OFFLINE, which reaches
the subscribed organisation's webhook (through the durable webhook outbox, sent by the domain
process's delivery loop) and its app topic, once; the event types it did not ask a webhook for
(CONCENTRATOR_ONLINE at the birth) do not, and an organisation without RECEIVE_EVENTS on the
concentrator gets nothing. And an event a monitor stored but was killed before serving is served
by the next monitor's sweep, once.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy.ext.asyncio import create_async_engine

from cloud.monitoring import MonitoringStore
from cloud.monitoring.events import EventType, make_event
from cloud.monitoring.process import MonitorOptions
from broker.sealing import KeyRing, new_key
from cloud.notify.models import DeliveryState
from cloud.notify.outbox import WebhookOutbox
from cloud.notify.signing import verify
from cloud.registry import OrganisationCreate, PlatformRole, Registry
from tests.cloud.core.harness import Inbox, json_of, session_for
from tests.cloud.core.webhook_server import webhook_server
from tests.cloud.platform.test_platform import (OPERATOR, bearer, platform_process, platform_settings,
                                                serve_with_lifespan)
from tests.edge.concentrator.conftest import concentrator_process, write_config
from tests.fixtures.mosquitto import MosquittoServer
from tests.fixtures.waiting import poll_until

ORG_A, ORG_B = "org-a", "org-b"
HOOK_SECRET = "monitoring-hook-secret-0123456789"
# The platform seals webhook secrets with it (the domain process opens them to sign).
HOOK_KEY = new_key("e2e")


async def test_a_concentrator_going_offline_reaches_the_webhook_once(
        tmp_path: Path, mosquitto: MosquittoServer, postgres_url: str) -> None:
    settings = platform_settings(mosquitto, postgres_url, secrets_key=HOOK_KEY)
    async with webhook_server() as hook, serve_with_lifespan(settings) as base, \
            httpx.AsyncClient(base_url=base, timeout=10) as http:
        async with Registry(url=postgres_url, sealing=KeyRing.parse(HOOK_KEY)) as registry:
            await registry.add_organisation(OrganisationCreate(identification=OPERATOR, name="Operator",
                                                               role=PlatformRole.ADMIN))
            for org in (ORG_A, ORG_B):
                await registry.add_organisation(OrganisationCreate(identification=org, name=org, webhook_url=hook.url,
                                                                   webhook_secret=HOOK_SECRET))
        added = await http.post("/v1/installation/devices", headers=bearer(ORG_A),
                                json={"identification": "conc-1", "deviceType": "CONCENTRATOR", "protocol": "MQTT"})
        assert added.status_code == 201, added.text
        for org in (ORG_A, ORG_B):  # org-b wants it too, but holds nothing on conc-1
            sub = await http.put("/v1/events/subscriptions/CONCENTRATOR_OFFLINE", headers=bearer(org),
                                 json={"mqtt": True, "webhook": True})
            assert sub.status_code == 200, sub.text
        # The birth's event on the app topic only: filtered by type, no webhook for it.
        sub = await http.put("/v1/events/subscriptions/CONCENTRATOR_ONLINE", headers=bearer(ORG_A),
                             json={"mqtt": True, "webhook": False})
        assert sub.status_code == 200, sub.text

        concentrator = concentrator_process(write_config(tmp_path, mqtt_port=mosquitto.port, meters=[]))
        apps, others = session_for(mosquitto, "app.org-a"), session_for(mosquitto, "app.org-b")
        inbox_a, inbox_b = Inbox(), Inbox()
        engine = create_async_engine(postgres_url)
        async with apps, others, platform_process("monitor", settings), platform_process("domain", settings):
            await apps.subscribe("app/org-a/#", inbox_a.handler)
            await others.subscribe("app/org-b/#", inbox_b.handler)
            concentrator.start()
            try:
                await inbox_a.wait_for(lambda m: m.topic.endswith("/CONCENTRATOR_ONLINE"), timeout=30)
                concentrator.kill()  # no DISCONNECT: the broker publishes its will
                note = await inbox_a.wait_for(lambda m: m.topic.endswith("/CONCENTRATOR_OFFLINE"), timeout=30)
                rows = await poll_until(WebhookOutbox(engine).all, lambda found: len(found) >= 1 and all(
                    r.state is DeliveryState.DELIVERED for r in found), timeout=60, what="the webhook delivered")
                history = await http.get("/v1/events", params={"deviceId": "conc-1",
                                                               "eventType": "CONCENTRATOR_OFFLINE"},
                                         headers=bearer(ORG_A))
            finally:
                concentrator.stop()
                await engine.dispose()

    assert len(rows) == 1 and rows[0].organisation == ORG_A
    [offline] = [r for r in hook.received if r.headers["x-gridwire-event"] == "event.CONCENTRATOR_OFFLINE"]
    body = json.loads(offline.body)
    assert body["deviceId"] == "conc-1" and body["severity"] == "MAJOR"
    assert body["eventId"] == json_of(note)["eventId"]
    assert verify(HOOK_SECRET, offline.body, offline.headers["x-gridwire-signature"])
    assert len(hook.received) == 1 and hook.accepted_counts().most_common(1)[0][1] == 1  # once, nothing else
    assert len(inbox_a.messages["app/org-a/monitoring/CONCENTRATOR_OFFLINE"]) == 1
    assert not inbox_b.messages  # subscribed, but no RECEIVE_EVENTS on conc-1
    assert history.status_code == 200 and history.json()["total"] == 1
    assert history.json()["events"][0]["eventId"] == body["eventId"]


async def test_an_event_stored_by_a_killed_monitor_is_served_by_the_next(
        mosquitto: MosquittoServer, postgres_url: str) -> None:
    settings = platform_settings(mosquitto, postgres_url, secrets_key=HOOK_KEY,
                                 monitor=MonitorOptions(sweep_seconds=0.2))
    async with webhook_server() as hook, serve_with_lifespan(settings) as base, \
            httpx.AsyncClient(base_url=base, timeout=10) as http:
        async with Registry(url=postgres_url, sealing=KeyRing.parse(HOOK_KEY)) as registry:
            await registry.add_organisation(OrganisationCreate(identification=ORG_A, name=ORG_A, webhook_url=hook.url,
                                                               webhook_secret=HOOK_SECRET))
        added = await http.post("/v1/installation/devices", headers=bearer(ORG_A),
                                json={"identification": "conc-1", "deviceType": "CONCENTRATOR", "protocol": "MQTT"})
        assert added.status_code == 201, added.text
        sub = await http.put("/v1/events/subscriptions/CONCENTRATOR_OFFLINE", headers=bearer(ORG_A),
                             json={"mqtt": False, "webhook": True})
        assert sub.status_code == 200, sub.text
        engine = create_async_engine(postgres_url)
        try:
            # What a monitor killed between storing the event and serving it leaves behind.
            lost = make_event(EventType.CONCENTRATOR_OFFLINE, "conc-1", at=datetime.now(UTC) - timedelta(minutes=2),
                              session=3, reason="connection lost")
            await MonitoringStore(engine).record_event(lost)
            async with platform_process("monitor", settings), platform_process("domain", settings):
                rows = await poll_until(WebhookOutbox(engine).all, lambda found: len(found) >= 1 and all(
                    r.state is DeliveryState.DELIVERED for r in found), timeout=60, what="the webhook delivered")
                # Served: later sweeps find nothing left to serve.
                await poll_until(lambda: MonitoringStore(engine).unnotified(
                    [EventType.CONCENTRATOR_OFFLINE], since=datetime.now(UTC) - timedelta(hours=1),
                    before=datetime.now(UTC)), lambda left: left == [], what="the event marked served")
        finally:
            await engine.dispose()

    assert len(rows) == 1
    [received] = hook.received
    assert json.loads(received.body)["eventId"] == str(lost.event_id)
    assert received.headers["x-gridwire-event"] == "event.CONCENTRATOR_OFFLINE"
