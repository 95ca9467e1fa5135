"""A campaign rig on real servers: migrated registry, real Mosquitto, the real core, a real
concentrator command executor, and campaign runners.

The meters' ``update_firmware`` handlers here are scripted per device (succeed, fail with a
code, never answer) so the state machine's paths can be driven; the end-to-end test in
tests/e2e uses the edge's real handler and DLMS image transfer instead.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from broker.schemas.firmware import SignedManifest
from broker.session import MqttSession
from cloud.core.commands import CommandStore
from cloud.core.dispatcher import CoreDispatcher
from cloud.core.models import CommandRow
from cloud.deadletters import DeadLetterStore
from cloud.firmware.campaign_runner import CampaignRunner
from cloud.firmware.campaign_store import CampaignStore
from cloud.firmware.campaigns import CampaignService
from cloud.firmware.catalogue import FirmwareCatalogue
from cloud.firmware.schemas import CampaignCreate, CampaignStatus
from cloud.migrations import migrate
from cloud.registry import (
    DeviceCreate,
    DeviceType,
    FunctionGroup,
    GridPosition,
    OrganisationCreate,
    Protocol,
    Registry,
)
from edge.commands import CommandExecutor
from edge.commands.errors import CommandFailed
from firmware_ota.signing import generate_key, sign
from gridwire.procs import ManagedProcess
from tests.cloud.core.harness import FAST_RETRY, session_for
from tests.firmware_ota.conftest import make_manifest
from tests.fixtures.mosquitto import MosquittoServer
from tests.fixtures.waiting import poll_until

ORG = "utility"
CONC = "conc-3"
MODEL = "SIM-DLMS"
VERSION = "2.1.0"


@dataclass
class ScriptedMeters:
    """What each meter's update_firmware does: succeed (default), fail with a code, or hang."""

    failures: dict[str, str] = field(default_factory=dict)
    silent: set[str] = field(default_factory=set)
    versions: dict[str, str] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)
    gate: asyncio.Event | None = None
    # Only these devices wait for the gate (all of them when empty).
    held: set[str] = field(default_factory=set)

    def handler(self, device: str) -> Callable[[dict[str, Any]], Any]:
        async def update_firmware(params: dict[str, Any]) -> dict[str, Any]:
            signed = SignedManifest.model_validate(params["signedManifest"])
            self.calls[device] += 1
            if self.gate is not None and (not self.held or device in self.held):
                await self.gate.wait()
            if device in self.silent:
                await asyncio.Event().wait()
            if device in self.failures:
                raise CommandFailed(self.failures[device], f"{self.failures[device]} on {device}")
            self.versions[device] = signed.manifest.version
            return {"firmwareVersion": signed.manifest.version, "imageSha256": signed.manifest.sha256}

        return update_firmware


@dataclass
class Rig:
    registry: Registry
    service: CampaignService
    store: CampaignStore
    catalogue: FirmwareCatalogue
    meters: ScriptedMeters
    signed: SignedManifest
    broker: MosquittoServer
    exits: AsyncExitStack
    db_url: str
    runners: list[CampaignRunner] = field(default_factory=list)

    async def create(self, devices: list[str], **options: Any) -> str:
        spec = CampaignCreate(name="rollout", firmware_id=self.signed.manifest.firmware_id, devices=devices, **options)
        return (await self.service.create(spec, organisation=ORG)).id

    async def runner(self, *, runner_id: str, lease: float = 5.0, republish_after: float = 5.0) -> CampaignRunner:
        session = await self.exits.enter_async_context(session_for(self.broker, "gridwire-cloud"))
        runner = CampaignRunner(store=self.store, catalogue=self.catalogue, registry=self.registry, publisher=session,
                                runner_id=runner_id, lease=timedelta(seconds=lease),
                                republish_after=timedelta(seconds=republish_after), poll_interval=0.05)
        self.runners.append(runner)
        return runner

    async def run_until(self, campaign_id: str, done: Callable[[CampaignStatus], bool], *,
                        runners: list[CampaignRunner] | None = None, timeout: float = 20.0) -> CampaignStatus:
        """Tick the runners until ``done(status)``; the status then."""
        chosen = runners if runners is not None else self.runners

        async def tick() -> CampaignStatus:
            for runner in chosen:
                await runner.tick()
            return await self.service.status(campaign_id)

        return await poll_until(tick, done, timeout=timeout, what=f"campaign {campaign_id} ticked to its state")

    async def commands_per_device(self) -> Counter[str]:
        async with self.registry.engine.connect() as conn:
            rows = (await conn.execute(select(CommandRow.device, func.count()).where(
                CommandRow.name == "update_firmware").group_by(CommandRow.device))).all()
        return Counter({device: count for device, count in rows})


def runner_process(directory: Path, name: str, *, broker: MosquittoServer, db_url: str,
                   lease: float = 2.0) -> ManagedProcess:
    """``gridwire cloud campaigns`` as an OS process."""
    env = {"GRIDWIRE_MQTT_HOST": broker.host, "GRIDWIRE_MQTT_PORT": str(broker.port),
           "GRIDWIRE_MQTT_USERNAME": "gridwire-cloud",
           "GRIDWIRE_MQTT_PASSWORD": broker.credentials("gridwire-cloud")["password"],
           "GRIDWIRE_DATABASE_URL": db_url, "GRIDWIRE_MQTT_CLIENT_ID": name,
           "GRIDWIRE_CAMPAIGN_POLL_SECONDS": "0.02", "GRIDWIRE_CAMPAIGN_LEASE_SECONDS": str(lease),
           "GRIDWIRE_CAMPAIGN_REPUBLISH_SECONDS": "3"}
    return ManagedProcess(argv=[sys.executable, "-m", "gridwire.cli", "cloud", "campaigns"], env=env,
                          log=directory / f"{name}.log")


async def wait_status(rig: Rig, campaign_id: str, done: Callable[[CampaignStatus], bool], *,
                      timeout: float = 30.0) -> CampaignStatus:
    """Poll the campaign's status (runners elsewhere advance it) until ``done``."""
    return await poll_until(lambda: rig.service.status(campaign_id), done, timeout=timeout,
                            what=f"campaign {campaign_id} to reach its state")


def meter_ids(count: int) -> list[str]:
    return [f"m{n:03d}" for n in range(count)]


async def seed(registry: Registry, meters: list[str], *, feeders: int) -> None:
    await registry.add_organisation(OrganisationCreate(identification=ORG, name="Utility"))
    await registry.create_device(DeviceCreate(identification=CONC, device_type=DeviceType.CONCENTRATOR,
                                              protocol=Protocol.MQTT), owner=ORG)
    for n, meter in enumerate(meters):
        await registry.create_device(DeviceCreate(
            identification=meter, device_type=DeviceType.SMART_METER, protocol=Protocol.DLMS, concentrator_id=CONC,
            model=MODEL, firmware_version="2.0.0",
            grid=GridPosition(feeder=f"F{n % feeders}", transformer=f"T{n % feeders}", substation="S1")), owner=ORG)
        await registry.grant(meter, ORG, FunctionGroup.FIRMWARE)


@asynccontextmanager
async def campaign_rig(broker: MosquittoServer, db_url: str, *, meters: int = 6, feeders: int = 3,
                       with_core: bool = True) -> AsyncIterator[Rig]:
    await migrate(db_url)
    async with AsyncExitStack() as exits:
        registry = await exits.enter_async_context(Registry(url=db_url))
        ids = meter_ids(meters)
        await seed(registry, ids, feeders=feeders)
        private, _public = generate_key()
        image = hashlib.sha256(b"image").digest() * 100
        signed = sign(make_manifest(image, version=VERSION, models=(MODEL,)), private)
        catalogue = FirmwareCatalogue(registry.engine)
        await catalogue.record(signed, uploaded_by="ops")
        store = CampaignStore(registry.engine)
        service = CampaignService(store=store, catalogue=catalogue, registry=registry)
        scripted = ScriptedMeters()
        if with_core:
            core_session = await exits.enter_async_context(session_for(broker, "gridwire-cloud"))
            dead_letters = DeadLetterStore(engine=registry.engine)
            await dead_letters.create_schema()
            core = CoreDispatcher(session=core_session, registry=registry, store=CommandStore(registry.engine),
                                  dead_letters=dead_letters, retry=FAST_RETRY, pump_interval=0.05)
            await core.start()
            exits.push_async_callback(core.close)
        conc_session: MqttSession = await exits.enter_async_context(session_for(broker, CONC))
        executor = CommandExecutor(session=conc_session, concentrator_id=CONC)
        for meter in ids:
            executor.register(meter, {"update_firmware": scripted.handler(meter)})
        await executor.start()
        yield Rig(registry=registry, service=service, store=store, catalogue=catalogue, meters=scripted,
                  signed=signed, broker=broker, exits=exits, db_url=db_url)
