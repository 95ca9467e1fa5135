"""Time sync over a real broker: a concentrator with a skewed clock learns the cloud's time,
and meter drift it reports is stored, alarmed on, and served by the API."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from broker.session import Message, MqttSession
from cloud.api.errors import install_error_table
from cloud.api.routes.clock_drift import router
from cloud.auth import issue_token, meters_from_claims
from cloud.migrations import migrate
from cloud.monitoring import EventType, MonitoringStore, Notifier
from cloud.registry import DeviceCreate, DeviceType, OrganisationCreate, Protocol, Registry
from cloud.settings import ApiSettings
from cloud.timesync import DriftRecorder, DriftStore, TimeService, drift_history
from edge.timesync import TimeSyncClient, check_meter, publish_drift
from tests.fixtures.mosquitto import MosquittoServer

SECRET = "timesync-test-secret-of-at-least-32-bytes"


@pytest.fixture
async def sessions(shared_mosquitto: MosquittoServer) -> AsyncIterator[Callable[[str, str], MqttSession]]:
    made: list[MqttSession] = []

    def make(user: str, client_id: str) -> MqttSession:
        session = MqttSession(client_id=f"{client_id}-{uuid.uuid4().hex[:6]}", host=shared_mosquitto.host,
                              port=shared_mosquitto.port, clean_start=True, session_expiry=0,
                              **shared_mosquitto.credentials(user))
        made.append(session)
        return session

    yield make
    for session in made:
        await session.close()


async def test_concentrator_recovers_a_known_skew_from_the_cloud(
        sessions: Callable[[str, str], MqttSession]) -> None:
    cloud = sessions("gridwire-cloud", "timesync")
    await cloud.connect()
    service = TimeService(session=cloud)
    await service.start()
    conc = sessions("conc-2", "concentrator-conc-2")
    await conc.connect()
    skew = -7.25  # the concentrator's clock runs 7.25 s ahead of the cloud's
    client = TimeSyncClient(session=conc, concentrator_id="conc-2", clock=lambda: time.time() - skew)
    await client.start()
    samples = [await client.exchange() for _ in range(5)]
    best = client.filter.estimate
    assert best is not None and best.delay == min(s.delay for s in samples)
    assert 0 <= best.delay < 0.5
    assert abs(best.offset - skew) <= best.delay / 2 + 1e-3
    # The concentrator's corrected view of time agrees with the cloud's.
    assert abs(client.reference_now().timestamp() - time.time()) <= best.delay / 2 + 0.05
    assert service.answered >= 5


class FakeMeterClock:
    """A meter clock running ``drift`` seconds ahead of real time, settable like the DLMS clock."""

    def __init__(self, drift: float) -> None:
        self.drift = timedelta(seconds=drift)

    async def read_clock(self) -> datetime:
        return datetime.now(UTC) + self.drift

    async def set_clock(self, value: datetime) -> None:
        self.drift = value - datetime.now(UTC)


async def test_meter_drift_is_reported_stored_alarmed_and_served(
        tmp_path: Path, sessions: Callable[[str, str], MqttSession]) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}"
    await migrate(url)
    async with Registry(url=url) as registry:
        await registry.add_organisation(OrganisationCreate(identification="org-b", name="B"))
        await registry.create_device(DeviceCreate(identification="m-drift", device_type=DeviceType.SMART_METER,
                                                  protocol=Protocol.DLMS, concentrator_id="conc-3"), owner="org-b")
        monitoring = MonitoringStore(registry.engine)
        await monitoring.subscribe("org-b", EventType.CLOCK_DRIFT)
        store = DriftStore(registry.engine)
        cloud = sessions("gridwire-cloud", "drift")
        await cloud.connect()
        stored = asyncio.Event()
        recorder = DriftRecorder(store=store, notifier=Notifier(store=monitoring, registry=registry, publisher=cloud),
                                 alarm_seconds=10)

        async def record_and_signal(message: Message) -> None:
            await recorder.handle_report(message)
            if len(await store.drift_history("m-drift")) == 2:
                stored.set()

        await cloud.subscribe("$share/timesync/concentrator/+/time/drift", record_and_signal)
        alarms: asyncio.Queue[bytes] = asyncio.Queue()

        async def on_alarm(message: Message) -> None:
            await alarms.put(message.payload)

        app_session = sessions("app.org-b", "app-org-b")
        await app_session.connect()
        await app_session.subscribe("app/org-b/monitoring/CLOCK_DRIFT", on_alarm)

        conc = sessions("conc-3", "concentrator-conc-3")
        await conc.connect()
        meter = FakeMeterClock(drift=95.0)
        start = datetime.now(UTC)
        for _ in range(2):  # the first check sets the clock, the second finds it right
            report = await check_meter("m-drift", meter, reference=lambda: datetime.now(UTC),
                                       threshold=timedelta(seconds=2))
            await publish_drift(conc, "conc-3", report)
        await asyncio.wait_for(stored.wait(), 10)

        history = await drift_history(registry.engine, "m-drift", since=start)
        assert [round(h.drift_seconds) for h in history] == [95, 0]
        assert [h.corrected for h in history] == [True, False]
        assert history[0].concentrator_id == "conc-3"
        alarm = await asyncio.wait_for(alarms.get(), 10)
        assert b'"eventType":"CLOCK_DRIFT"' in alarm and b'"deviceId":"m-drift"' in alarm
        assert alarms.empty()  # the zero-drift check raised nothing
        assert await store.drift_history("m-drift", since=datetime.now(UTC) + timedelta(hours=1)) == []

        app = FastAPI()

        install_error_table(app)
        app.include_router(router)
        app.state.settings = ApiSettings(jwt_secret=SECRET)
        app.state.clock = lambda: datetime.now(UTC)
        app.state.meter_access = meters_from_claims
        app.state.drift_store = store
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            mine = {"Authorization": f"Bearer {issue_token(secret=SECRET, org='org-b', meters=['m-drift'])}"}
            other = {"Authorization": f"Bearer {issue_token(secret=SECRET, org='org-x', meters=['m-other'])}"}
            ok = await http.get("/v1/devices/m-drift/clockDrift", headers=mine)
            assert ok.status_code == 200
            body = ok.json()
            assert [round(r["driftSeconds"]) for r in body] == [95, 0] and body[0]["concentratorId"] == "conc-3"
            later = await http.get("/v1/devices/m-drift/clockDrift", headers=mine,
                                   params={"since": history[1].measured_at.isoformat()})
            assert len(later.json()) == 1
            assert (await http.get("/v1/devices/m-drift/clockDrift", headers=other)).status_code == 403
            assert (await http.get("/v1/devices/m-drift/clockDrift")).status_code == 401
