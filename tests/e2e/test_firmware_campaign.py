"""A firmware campaign end to end on real parts: the campaign runner issues update_firmware
through the real core to a real concentrator, which downloads the signed image once from the
ChunkServer over Mosquitto and transfers it to three simulated DLMS meters (COSEM class 18)."""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from contextlib import AsyncExitStack
from pathlib import Path

from broker import topics
from broker.session import Message, MqttSession
from cloud.core.commands import CommandStore
from cloud.core.dispatcher import CoreDispatcher
from cloud.deadletters import DeadLetterStore
from cloud.firmware.campaign_runner import CampaignRunner
from cloud.firmware.campaign_store import CampaignStore
from cloud.firmware.campaigns import CampaignService
from cloud.firmware.catalogue import FirmwareCatalogue
from cloud.firmware.schemas import CampaignCreate
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
from edge.concentrator import Concentrator
from edge.config import load_config
from edge.dlms import SecurityMode
from firmware_ota.campaign_logic import CampaignState, TargetState
from firmware_ota.chunk_server import ChunkServer
from firmware_ota.signing import generate_key, sign
from firmware_ota.store import FirmwareStore
from gridwire.services import LocalMosquitto
from tests.edge.ota.conftest import (
    CID,
    IMAGE,
    MODEL,
    Keys,
    dlms_entry,
    manifest_for,
    simulator,
    write_config,
)
from tests.fixtures.waiting import poll_until

ORG = "utility"
METERS = ["fw-meter-1", "fw-meter-2", "fw-meter-3"]
CHUNK = 8192


def cloud_session(broker: LocalMosquitto, role: str) -> MqttSession:
    return MqttSession(client_id=f"{role}-{uuid.uuid4().hex[:8]}", host=broker.host, port=broker.port,
                       **broker.credentials("gridwire-cloud"))


async def test_campaign_updates_meters_behind_one_concentrator(tmp_path: Path, mosquitto: LocalMosquitto) -> None:
    private, public = generate_key()
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "release.pem").write_bytes(public)
    keys = Keys(private=private, public=public, directory=tmp_path / "keys")
    signed = sign(manifest_for(IMAGE), private)
    store = FirmwareStore(root=tmp_path / "store")
    store.add(image=IMAGE, signed=signed, trusted=keys.trusted)

    url = f"sqlite+aiosqlite:///{tmp_path / 'platform.db'}"
    await migrate(url)
    requests: list[int] = []
    births = asyncio.Event()

    async def on_request(message: Message) -> None:
        requests.append(int(json.loads(message.payload)["offset"]))

    async def on_status(message: Message) -> None:
        if message.payload and json.loads(message.payload).get("state") == "ONLINE":
            births.set()

    stop = asyncio.Event()
    async with AsyncExitStack() as exits:
        registry = await exits.enter_async_context(Registry(url=url))
        await registry.add_organisation(OrganisationCreate(identification=ORG, name="Utility"))
        await registry.create_device(DeviceCreate(identification=CID, device_type=DeviceType.CONCENTRATOR,
                                                  protocol=Protocol.MQTT), owner=ORG)
        for n, meter in enumerate(METERS):
            await registry.create_device(DeviceCreate(
                identification=meter, device_type=DeviceType.SMART_METER, protocol=Protocol.DLMS,
                concentrator_id=CID, model=MODEL, firmware_version="2.0.0",
                grid=GridPosition(feeder=f"F{n % 2}", substation="S1")), owner=ORG)
            await registry.grant(meter, ORG, FunctionGroup.FIRMWARE)
        catalogue = FirmwareCatalogue(registry.engine)
        await catalogue.record(signed, uploaded_by="ops")

        sims = [await exits.enter_async_context(simulator(SecurityMode.LLS, name=m)) for m in METERS]
        watch = await exits.enter_async_context(cloud_session(mosquitto, "watch"))
        await watch.subscribe(topics.concentrator_firmware(CID, "request"), on_request)
        await watch.subscribe(topics.concentrator_status(CID), on_status)
        core_session = await exits.enter_async_context(cloud_session(mosquitto, "core"))
        dead_letters = DeadLetterStore(engine=registry.engine)
        await dead_letters.create_schema()
        core = CoreDispatcher(session=core_session, registry=registry, store=CommandStore(registry.engine),
                              dead_letters=dead_letters, pump_interval=0.1)
        await core.start()
        exits.push_async_callback(core.close)
        chunk_session = await exits.enter_async_context(cloud_session(mosquitto, "chunks"))
        chunks = ChunkServer(session=chunk_session, store=store)
        await chunks.start()

        config = write_config(tmp_path / "conc", broker=mosquitto, keys=keys, chunk_size=CHUNK,
                              meters=[dlms_entry(m, sim) for m, sim in zip(METERS, sims, strict=True)])
        concentrator = Concentrator.from_config(load_config(config))
        conc_task = asyncio.create_task(concentrator.run(stop), name="concentrator")
        try:
            await asyncio.wait_for(births.wait(), 30)
            service = CampaignService(store=CampaignStore(registry.engine), catalogue=catalogue, registry=registry)
            campaign = await service.create(CampaignCreate(
                name="e2e", firmware_id=signed.manifest.firmware_id, devices=METERS, canary_size=1,
                max_groups_per_wave=1, start=True), organisation=ORG)
            runner_session = await exits.enter_async_context(cloud_session(mosquitto, "campaigns"))
            runner = CampaignRunner(store=CampaignStore(registry.engine), catalogue=catalogue, registry=registry,
                                    publisher=runner_session, runner_id="e2e-runner", poll_interval=0.05)
            runner_task = asyncio.create_task(runner.run(stop), name="campaign-runner")
            status = await poll_until(lambda: service.status(campaign.id), lambda s: not s.campaign.active,
                                      timeout=120, interval=0.1, what="the campaign to end")
        finally:
            stop.set()
            await asyncio.wait_for(conc_task, 30)
        await runner_task

        assert status.campaign.state is CampaignState.FINISHED, status
        assert status.counts[TargetState.SUCCEEDED] == 3 and status.failed == []
        assert [w.groups for w in status.waves] == [["F0"], ["F0"], ["F1"]]
        for meter, sim in zip(METERS, sims, strict=True):
            assert sim.model.firmware.version == "2.1.0"
            assert (await registry.get_device(meter)).firmware_version == "2.1.0"
        # Downloaded once for the three meters: every chunk requested once, the image served once.
        assert sorted(requests) == list(range(0, len(IMAGE), CHUNK))
        assert len(requests) == math.ceil(len(IMAGE) / CHUNK)
        assert chunks.bytes_served == len(IMAGE)
        assert concentrator.firmware.transfers == 3
