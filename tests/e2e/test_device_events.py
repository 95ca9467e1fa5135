"""Device events end to end on real parts: a DLMS meter simulator pushes, the concentrator (its
own process) listens and forwards from its outbox, Mosquitto, the domain process stores and
notifies, PostgreSQL, a webhook receiver and the platform's web API.

Pull the meter's power: the POWER_FAILURE reaches the subscribed organisation's webhook, its
app topic and the history API, once; an organisation without RECEIVE_EVENTS on the meter gets
nothing. Then events pushed while nothing confirms them survive the concentrator's SIGKILL and
are stored exactly once.
"""

from __future__ import annotations

import json
import socket
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy.ext.asyncio import create_async_engine

from broker.sealing import KeyRing, new_key
from cloud.notify.models import DeliveryState
from cloud.notify.outbox import WebhookOutbox
from cloud.notify.signing import verify
from cloud.registry import OrganisationCreate, PlatformRole, Registry
from edge.dlms import SecurityMode
from edge.dlms.alarms import ALARM_BITS
from gridwire.procs import free_port
from tests.cloud.core.harness import Inbox, json_of, session_for
from tests.cloud.core.webhook_server import webhook_server
from tests.cloud.platform.test_platform import (OPERATOR, bearer, platform_process, platform_settings,
                                                serve_with_lifespan)
from tests.edge.concentrator.conftest import concentrator_process, dlms_entry, dlms_simulator, write_config
from tests.fixtures.mosquitto import MosquittoServer
from tests.fixtures.waiting import poll_until, wait_for

ORG_A, ORG_B = "org-a", "org-b"
METER = "meter-ev-1"
HOOK_SECRET = "event-hook-secret-0123456789"
# The platform seals webhook secrets with it (the domain process opens them to sign).
HOOK_KEY = new_key("e2e")


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def events_in_outbox(path: Path, event_type: str | None = None) -> int:
    """Events waiting in the concentrator's outbox (of one type, if given)."""
    if not path.exists():
        return 0
    like = f'%"{event_type}"%' if event_type else "%"
    with sqlite3.connect(path) as db:
        return db.execute("SELECT count(*) FROM outbox WHERE topic LIKE 'concentrator/%/event/%' "
                          "AND CAST(payload AS TEXT) LIKE ?", (like,)).fetchone()[0]


async def test_a_power_failure_reaches_webhook_app_and_history_once_and_survives_a_kill(
        tmp_path: Path, mosquitto: MosquittoServer, postgres_url: str) -> None:
    settings = platform_settings(mosquitto, postgres_url, secrets_key=HOOK_KEY)
    async with webhook_server() as hook, serve_with_lifespan(settings) as base, \
            httpx.AsyncClient(base_url=base, timeout=10) as http, \
            dlms_simulator(lambda: datetime.now(UTC), SecurityMode.LLS, serial="GWEVENT00001") as sim:
        async with Registry(url=postgres_url, sealing=KeyRing.parse(HOOK_KEY)) as registry:
            await registry.add_organisation(OrganisationCreate(identification=OPERATOR, name="Operator",
                                                               role=PlatformRole.ADMIN))
            await registry.add_organisation(OrganisationCreate(identification=ORG_A, name="A", webhook_url=hook.url,
                                                               webhook_secret=HOOK_SECRET))
            await registry.add_organisation(OrganisationCreate(identification=ORG_B, name="B"))
        for device in ({"identification": "conc-1", "deviceType": "CONCENTRATOR", "protocol": "MQTT"},
                       {"identification": METER, "deviceType": "SMART_METER", "protocol": "DLMS",
                        "concentratorId": "conc-1"}):
            added = await http.post("/v1/installation/devices", headers=bearer(ORG_A), json=device)
            assert added.status_code == 201, added.text
        for org in (ORG_A, ORG_B):
            sub = await http.put("/v1/events/subscriptions/POWER_FAILURE", headers=bearer(org),
                                 json={"mqtt": True, "webhook": org == ORG_A})
            assert sub.status_code == 200, sub.text
        refused = await http.put("/v1/events/subscriptions/TAMPER", headers=bearer(ORG_B), json={"webhook": True})
        assert refused.status_code == 422 and "no webhook" in refused.json()["detail"]
        sub = await http.put("/v1/events/subscriptions/METER_ALARM", headers=bearer(ORG_A), json={"webhook": True})
        assert sub.status_code == 200, sub.text

        push_port = free_port()
        config = write_config(tmp_path, mqtt_port=mosquitto.port, meters=[
            dlms_entry(METER, sim, interval=30) + f'device_name = "{sim.model.serial}"\n'])
        config.write_text(config.read_text() + f"\n[push]\nport = {push_port}\n")
        sim.model.push_destination = f"127.0.0.1:{push_port}"
        concentrator = concentrator_process(config)
        apps = session_for(mosquitto, "app.org-a")
        others = session_for(mosquitto, "app.org-b")
        inbox_a, inbox_b = Inbox(), Inbox()
        async with apps, others:
            await apps.subscribe("app/org-a/#", inbox_a.handler)
            await others.subscribe("app/org-b/#", inbox_b.handler)
            concentrator.start()
            try:
                await wait_for(lambda: listening(push_port), timeout=30, what="the concentrator's push listener")
                async with platform_process("domain", settings):
                    await sim.pull_power()
                    await wait_for(lambda: hook.accepted, timeout=30, what="the webhook")
                    note = await inbox_a.wait_for(lambda m: m.topic.endswith("/POWER_FAILURE"), timeout=10)
                    history = await poll_until(
                        lambda: http.get("/v1/events", params={"deviceId": METER}, headers=bearer(ORG_A)),
                        lambda r: r.status_code == 200 and r.json()["total"] >= 1, what="the history")
                    await sim.restore_power()  # not subscribed: stored, not sent
                    await poll_until(lambda: http.get("/v1/events", params={"deviceId": METER, "eventType":
                                                                            "POWER_RESTORED"}, headers=bearer(ORG_A)),
                                     lambda r: r.json()["total"] == 1, what="the restore in the history")

                # Nothing confirms now: alarms pushed meanwhile wait in the concentrator's outbox.
                bits = [bit for bit in sorted(ALARM_BITS) if ALARM_BITS[bit] != "FRAUD_ATTEMPT"][:6]
                for bit in bits:
                    sim.model.alarm_bits = 0  # as a head end clears it: each push then carries one alarm
                    await sim.pusher.raise_alarm(bit)
                outbox = tmp_path / "outbox.sqlite"
                # Every alarm, not just as many events (the restore's confirmation may still be on
                # its way): the concentrator is killed only once it holds each of them.
                await wait_for(lambda: events_in_outbox(outbox, "METER_ALARM") >= len(bits), timeout=20,
                               what="the alarms in the outbox")
                concentrator.kill()
                assert events_in_outbox(outbox, "METER_ALARM") >= len(bits)  # still there: never confirmed
                async with platform_process("domain", settings):
                    concentrator.start()
                    await wait_for(lambda: events_in_outbox(outbox) == 0, timeout=60,
                                   what="every event confirmed after the restart")
                    alarms = await http.get("/v1/events", params={"eventType": "METER_ALARM", "pageSize": 100},
                                            headers=bearer(ORG_A))
                    # Delivered from the webhook outbox by the domain process's loop (retries back off
                    # when the machine is slow): wait on the outbox's rows, which say how far each got.
                    engine = create_async_engine(postgres_url)
                    try:
                        await poll_until(WebhookOutbox(engine).all, lambda rows: len(rows) >= 1 + len(bits) and all(
                            r.state is DeliveryState.DELIVERED for r in rows), timeout=120, what="the alarm webhooks")
                    finally:
                        await engine.dispose()
            finally:
                concentrator.stop()

        assert history.json()["total"] == 1
        [event] = history.json()["events"]
        assert event["eventType"] == "POWER_FAILURE" and event["deviceId"] == METER and event["severity"] == "MAJOR"
        assert event["detail"]["source"] == "dlms-push" and event["detail"]["concentratorId"] == "conc-1"
        power = [r for r in hook.received if r.headers["x-gridwire-event"] == "event.POWER_FAILURE"]
        assert len(power) == 1 and json.loads(power[0].body)["eventId"] == event["eventId"]
        assert verify(HOOK_SECRET, power[0].body, power[0].headers["x-gridwire-signature"])
        assert json_of(note)["eventId"] == event["eventId"]
        assert len(inbox_a.messages["app/org-a/monitoring/POWER_FAILURE"]) == 1
        assert not inbox_b.messages  # subscribed, but no RECEIVE_EVENTS on the meter
        assert (await http.get("/v1/events", params={"deviceId": METER}, headers=bearer(ORG_B))).status_code == 403
        assert (await http.get("/v1/events", headers=bearer(ORG_B))).json()["total"] == 0

        names = sorted(e["detail"]["name"] for e in alarms.json()["events"])
        assert names == sorted({ALARM_BITS[b] for b in bits})  # each alarm once, whatever was sent twice
        assert hook.accepted_counts().most_common(1)[0][1] == 1  # no delivery accepted twice
