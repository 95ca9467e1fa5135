"""The whole command path wired on real servers: API, domain, core, notify, edge and devices.

Used by the core and domain tests: a migrated registry (SQLite or PostgreSQL), a real
Mosquitto, a real uvicorn serving the domain routers, the consumers each on its own MQTT
session, a concentrator executor and an MQTT-native street light.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import uvicorn
from fastapi import FastAPI, Request

from broker.sealing import KeyRing
from broker.session import Backoff, Message, MqttSession
from cloud.api.deps import current_org
from cloud.api.errors import install_error_table
from cloud.api.routes import (
    loadcontrol,
    meter_read_schedules,
    powerquality,
    publiclighting,
    smartmetering,
    tariffswitching,
)
from cloud.core.commands import CommandStore
from cloud.core.dispatcher import CoreDispatcher
from cloud.core.lifecycle import RetryPolicy
from cloud.deadletters import DeadLetterStore
from cloud.domains.consumer import DomainConsumer
from cloud.domains.requests import RequestStore
from cloud.domains.results_consumer import ResultsConsumer
from cloud.migrations import migrate
from cloud.notify.delivery import DeliveryPolicy, WebhookDelivery
from cloud.notify.webhook import WebhookSender
from cloud.scheduler import ScheduleStore
from cloud.registry import (
    DeviceCreate,
    DeviceType,
    FunctionGroup,
    OrganisationCreate,
    Protocol,
    Registry,
)
from edge.commands import CommandExecutor
from edge.devices.street_light import StreetLightFleet, street_light
from tests.fixtures.mosquitto import MosquittoServer
from tests.fixtures.procs import free_port
from tests.fixtures.waiting import wait_for

ORG_A, ORG_B = "org-a", "org-b"
LIGHT, METER, CONCENTRATOR = "light-1", "meter-1", "conc-1"
FAST_RETRY = RetryPolicy(max_attempts=3, backoff=Backoff(initial=0.05, maximum=0.2))
FAST_WEBHOOKS = DeliveryPolicy(backoff=Backoff(initial=0.05, maximum=0.2), poll_interval=0.05)
_ids = itertools.count()


def session_for(broker: MosquittoServer, username: str, *, client_id: str | None = None,
                session_expiry: int = 0) -> MqttSession:
    """A session for one test. No expiry by default: on a shared broker a left-over durable member of
    a shared subscription group would keep receiving (and queueing) its share of the next test's messages."""
    return MqttSession(client_id=client_id or f"{username}-{next(_ids)}", host=broker.host, port=broker.port,
                       backoff=Backoff(initial=0.05, maximum=0.5), session_expiry=session_expiry,
                       **broker.credentials(username))


@dataclass
class Inbox:
    """Messages received per topic, with an event per arrival to wait on."""

    messages: dict[str, list[Message]] = field(default_factory=lambda: defaultdict(list))
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def handler(self, message: Message) -> None:
        async with self.arrived:
            self.messages[message.topic].append(message)
            self.arrived.notify_all()

    async def wait_for(self, predicate: Callable[[Message], bool], *, timeout: float = 10.0) -> Message:
        def found() -> Message | None:
            return next((m for ms in self.messages.values() for m in ms if predicate(m)), None)

        async with asyncio.timeout(timeout), self.arrived:
            await self.arrived.wait_for(lambda: found() is not None)
        result = found()
        assert result is not None
        return result


def json_of(message: Message) -> dict[str, Any]:
    return json.loads(message.payload)


class MeterHandlers:
    """In-process stand-ins for a DLMS meter's command handlers (the DLMS adapter plugs in here)."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.breaker_closed = True
        self.fail_transiently = 0

    async def read_now(self, _params: dict[str, Any]) -> dict[str, Any]:
        self.calls.append("read_now")
        if self.fail_transiently > 0:
            self.fail_transiently -= 1
            raise ConnectionError("meter did not answer the association request")
        return {"OBIS_1.8.1": 1234.5, "unit": "kWh"}

    async def disconnect(self, _params: dict[str, Any]) -> dict[str, Any]:
        self.calls.append("disconnect")
        self.breaker_closed = False
        return {"breakerClosed": False}

    async def connect(self, _params: dict[str, Any]) -> dict[str, Any]:
        self.calls.append("connect")
        self.breaker_closed = True
        return {"breakerClosed": True}

    async def set_clock(self, params: dict[str, Any]) -> dict[str, Any]:
        self.calls.append("set_clock")
        return {"clockSet": params.get("time", "concentrator")}

    async def get_firmware_version(self, _params: dict[str, Any]) -> dict[str, Any]:
        self.calls.append("get_firmware_version")
        return {"firmwareVersion": "4.2.1"}

    def table(self) -> dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]]:
        return {"read_now": self.read_now, "disconnect": self.disconnect, "connect": self.connect,
                "set_clock": self.set_clock, "get_firmware_version": self.get_firmware_version}


async def seed(registry: Registry, *, webhook_url: str | None = None, webhook_secret: str | None = None) -> None:
    """Organisations A (owner of everything) and B (only MONITORING on the light)."""
    await registry.add_organisation(OrganisationCreate(identification=ORG_A, name="Org A", webhook_url=webhook_url,
                                                       webhook_secret=webhook_secret))
    await registry.add_organisation(OrganisationCreate(identification=ORG_B, name="Org B"))
    await registry.create_device(DeviceCreate(identification=CONCENTRATOR, device_type=DeviceType.CONCENTRATOR,
                                              protocol=Protocol.MQTT), owner=ORG_A)
    await registry.create_device(DeviceCreate(identification=METER, device_type=DeviceType.SMART_METER,
                                              protocol=Protocol.DLMS, concentrator_id=CONCENTRATOR), owner=ORG_A)
    await registry.create_device(DeviceCreate(identification=LIGHT, device_type=DeviceType.STREET_LIGHT,
                                              protocol=Protocol.MQTT), owner=ORG_A)
    await registry.grant(LIGHT, ORG_B, FunctionGroup.MONITORING)


def build_app(*, registry: Registry, requests: RequestStore, mqtt: MqttSession,
              sealing: KeyRing | None = None) -> FastAPI:
    app = FastAPI()
    install_error_table(app)
    for area in (publiclighting, smartmetering, tariffswitching, loadcontrol, meter_read_schedules,
                 powerquality):
        app.include_router(area.router)
    app.state.registry, app.state.requests, app.state.mqtt = registry, requests, mqtt
    app.state.schedules = ScheduleStore(registry.engine)
    app.state.sealing = sealing

    async def org_from_header(request: Request) -> str:
        return request.headers["X-Org"]

    app.dependency_overrides[current_org] = org_from_header
    return app


@asynccontextmanager
async def serve(app: FastAPI, *, lifespan: Literal["on", "off"] = "off") -> AsyncIterator[str]:
    """A real uvicorn on a free port in this event loop; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan=lifespan))
    task = asyncio.create_task(server.serve(), name="uvicorn")
    try:
        await wait_for(lambda: server.started or task.done(), timeout=20, interval=0.01, what="uvicorn to start")
        if task.done():
            task.result()
            raise AssertionError("uvicorn stopped before it started")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@dataclass
class Stack:
    """The running platform, and handles to look inside it."""

    registry: Registry
    store: CommandStore
    requests: RequestStore
    dead_letters: DeadLetterStore
    http: httpx.AsyncClient
    app_inbox: Inbox
    meter: MeterHandlers
    executor: CommandExecutor | None
    light: StreetLightFleet
    cores: list[CoreDispatcher]
    broker: MosquittoServer
    exits: AsyncExitStack

    async def post(self, path: str, body: dict[str, Any] | None = None, *, org: str = ORG_A,
                   **params: Any) -> httpx.Response:
        return await self.http.post(path, json=body, headers={"X-Org": org}, params=params)

    async def result(self, domain: str, correlation_id: str, *, org: str = ORG_A) -> dict[str, Any]:
        answer = await self.http.get(f"/v1/{domain}/results/{correlation_id}", headers={"X-Org": org})
        assert answer.status_code == 200, answer.text
        return answer.json()

    async def notification(self, correlation_id: str, *, timeout: float = 10.0) -> dict[str, Any]:
        message = await self.app_inbox.wait_for(lambda m: json_of(m).get("correlationId") == correlation_id,
                                                timeout=timeout)
        return json_of(message) | {"_topic": message.topic}

    concentrator_session: MqttSession | None = None
    concentrator_client_id: str = field(default_factory=lambda: f"conc-1-{next(_ids)}")

    async def start_concentrator(self) -> CommandExecutor:
        """Start (or restart, with the same durable session) concentrator conc-1's executor."""
        # Durable, so commands published while it is stopped wait for it (until they expire).
        session = session_for(self.broker, CONCENTRATOR, client_id=self.concentrator_client_id, session_expiry=300)
        await session.connect()
        self.concentrator_session = session
        executor = CommandExecutor(session=session, concentrator_id=CONCENTRATOR)
        executor.register(METER, self.meter.table())
        await executor.start()
        self.executor = executor
        return executor

    async def stop_concentrator(self) -> None:
        if self.concentrator_session is not None:
            await self.concentrator_session.close()
            self.concentrator_session = None


@asynccontextmanager
async def platform(broker: MosquittoServer, db_url: str, *, cores: int = 1, concentrator: bool = True,
                   pump_interval: float = 0.1, webhook_url: str | None = None,
                   webhook_secret: str | None = None, sealing: KeyRing | None = None) -> AsyncIterator[Stack]:
    """Start everything; stop it all (in reverse) on exit."""
    await migrate(db_url)
    async with AsyncExitStack() as exits:
        registry = await exits.enter_async_context(Registry(url=db_url, sealing=sealing))
        await seed(registry, webhook_url=webhook_url, webhook_secret=webhook_secret)
        store = CommandStore(registry.engine)
        requests = RequestStore(registry.engine)
        dead_letters = DeadLetterStore(engine=registry.engine)
        await dead_letters.create_schema()
        webhooks = WebhookSender(engine=registry.engine, sealing=sealing)
        exits.push_async_callback(webhooks.close)
        delivery = WebhookDelivery(sender=webhooks, policy=FAST_WEBHOOKS)
        delivery.start()
        exits.push_async_callback(delivery.close)

        app_session = await exits.enter_async_context(session_for(broker, "app.org-a"))
        inbox = Inbox()
        await app_session.subscribe("app/org-a/#", inbox.handler)

        cores_running = []
        for _ in range(cores):
            core_session = await exits.enter_async_context(session_for(broker, "gridwire-cloud"))
            core = CoreDispatcher(session=core_session, registry=registry, store=store, dead_letters=dead_letters,
                                  retry=FAST_RETRY, pump_interval=pump_interval)
            await core.start()
            exits.push_async_callback(core.close)
            cores_running.append(core)

        domain_session = await exits.enter_async_context(session_for(broker, "gridwire-cloud"))
        await DomainConsumer(session=domain_session, requests=requests).start()
        notify_session = await exits.enter_async_context(session_for(broker, "gridwire-cloud"))
        results = ResultsConsumer(session=notify_session, requests=requests, webhooks=webhooks)
        await results.start()
        exits.push_async_callback(results.close)

        light_session = await exits.enter_async_context(session_for(broker, LIGHT, client_id="device-light-1"))
        light = street_light(session=light_session, light_id=LIGHT)
        await light.start()

        api_session = await exits.enter_async_context(session_for(broker, "gridwire-cloud"))
        base_url = await exits.enter_async_context(serve(build_app(registry=registry, requests=requests, mqtt=api_session,
                                                                 sealing=sealing)))
        http = await exits.enter_async_context(httpx.AsyncClient(base_url=base_url, timeout=10))

        stack = Stack(registry=registry, store=store, requests=requests, dead_letters=dead_letters, http=http,
                      app_inbox=inbox, meter=MeterHandlers(), executor=None, light=light, cores=cores_running,
                      broker=broker, exits=exits)
        exits.push_async_callback(stack.stop_concentrator)
        if concentrator:
            await stack.start_concentrator()
        yield stack
