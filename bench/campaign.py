"""Benchmark: the cloud side of a firmware campaign (runner + core + broker + concentrator executor).

Starts Mosquitto on a free port and a fresh SQLite registry (or ``--registry-url``), registers
``--devices`` DLMS meters behind ``--concentrators`` concentrators spread over ``--feeders``
feeders, and runs one campaign to the end with one in-process campaign runner and one core.
Each concentrator is a real command executor whose ``update_firmware`` answers at once, so
what is measured is the platform's own cost per device: claim, publish, core authorisation
and routing, the per-meter lock, the response, the runner's record and the registry update.
DLMS image transfer is not in it (``bench/firmware.py`` measures the transfer). Prints the
wall time, devices/s, waves, and checks every device got exactly one command.

    .venv/bin/python -m bench.campaign --devices 2000
    .venv/bin/python -m bench.campaign --devices 5000 --max-in-flight 500 --per-feeder 100
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from sqlalchemy import func, insert, select

from broker.mosquitto_conf import Account
from broker.schemas.firmware import FirmwareManifest, SignedManifest, created_now
from broker.session import MqttSession
from cloud.core.commands import CommandStore
from cloud.core.dispatcher import CoreDispatcher
from cloud.core.models import CommandRow
from cloud.deadletters import DeadLetterStore
from cloud.firmware.campaign_runner import CampaignRunner
from cloud.firmware.campaign_store import CampaignStore
from cloud.firmware.campaigns import CampaignService
from cloud.firmware.catalogue import FirmwareCatalogue
from cloud.firmware.schemas import CampaignCreate
from cloud.migrations import migrate
from cloud.registry import FunctionGroup, OrganisationCreate, Registry
from cloud.registry.models import Device, DeviceAuthorisation, Organisation, utcnow
from edge.commands import CommandExecutor
from firmware_ota.signing import generate_key, sign
from gridwire.procs import free_port
from gridwire.services import LocalMosquitto

ORG = "utility"
MODEL = "SIM-DLMS"
CLOUD = Account(username="gridwire-cloud", password="bench-cloud-pw", role="cloud")


async def _register(registry: Registry, *, devices: int, concentrators: int, feeders: int) -> list[str]:
    await registry.add_organisation(OrganisationCreate(identification=ORG, name="Utility"))
    now = utcnow()
    ids = [f"meter-{n:06d}" for n in range(devices)]
    async with registry.engine.begin() as conn:
        org_id = await conn.scalar(select(Organisation.id).where(Organisation.identification == ORG))
        await conn.execute(insert(Device), [
            {"identification": f"conc-{c}", "device_type": "CONCENTRATOR", "protocol": "MQTT", "state": "ACTIVE",
             "created_at": now, "updated_at": now} for c in range(1, concentrators + 1)])
        await conn.execute(insert(Device), [
            {"identification": m, "device_type": "SMART_METER", "protocol": "DLMS", "state": "ACTIVE",
             "concentrator_id": f"conc-{n % concentrators + 1}", "model": MODEL, "firmware_version": "2.0.0",
             "feeder": f"F{n % feeders}", "substation": "S1", "created_at": now, "updated_at": now}
            for n, m in enumerate(ids)])
        rows = (await conn.execute(select(Device.id).where(Device.identification.in_(ids)))).scalars().all()
        await conn.execute(insert(DeviceAuthorisation), [
            {"device_id": d, "organisation_id": org_id, "function_group": FunctionGroup.FIRMWARE.value,
             "created_at": now} for d in rows])
    return ids


async def _bench(broker: LocalMosquitto, url: str, args: argparse.Namespace) -> dict[str, object]:
    await migrate(url)
    async with Registry(url=url) as registry:
        ids = await _register(registry, devices=args.devices, concentrators=args.concentrators, feeders=args.feeders)
        private, _ = generate_key()
        signed = sign(FirmwareManifest(firmware_id="bench-2.1.0", version="2.1.0", device_models=[MODEL],
                                       image_identifier="IMG-2.1.0", size=1, sha256="0" * 64,
                                       created=created_now()), private)
        catalogue = FirmwareCatalogue(registry.engine)
        await catalogue.record(signed, uploaded_by="bench")

        async def update_firmware(params: dict[str, object]) -> dict[str, object]:
            manifest = SignedManifest.model_validate(params["signedManifest"]).manifest
            return {"firmwareVersion": manifest.version, "imageSha256": manifest.sha256}

        def session(name: str, username: str, password: str) -> MqttSession:
            return MqttSession(client_id=name, host=broker.host, port=broker.port, username=username,
                               password=password, receive_maximum=1000, max_inflight=1000)

        sessions = [session("bench-core", CLOUD.username, CLOUD.password),
                    session("bench-runner", CLOUD.username, CLOUD.password)]
        sessions += [session(f"conc-{c}", f"conc-{c}", f"conc-{c}-pw") for c in range(1, args.concentrators + 1)]
        for s in sessions:
            await s.connect()
        try:
            dead_letters = DeadLetterStore(engine=registry.engine)
            await dead_letters.create_schema()
            core = CoreDispatcher(session=sessions[0], registry=registry, store=CommandStore(registry.engine),
                                  dead_letters=dead_letters, pump_interval=0.1)
            await core.start()
            for c, conc_session in enumerate(sessions[2:], start=1):
                executor = CommandExecutor(session=conc_session, concentrator_id=f"conc-{c}")
                for n in range(c - 1, len(ids), args.concentrators):
                    executor.register(ids[n], {"update_firmware": update_firmware})
                await executor.start()
            store = CampaignStore(registry.engine)
            service = CampaignService(store=store, catalogue=catalogue, registry=registry)
            started = time.perf_counter()
            campaign = await service.create(CampaignCreate(
                name="bench", firmware_id="bench-2.1.0", devices=ids, canary_size=args.canary,
                max_groups_per_wave=args.groups_per_wave, max_in_flight=args.max_in_flight,
                max_in_flight_per_feeder=args.per_feeder, start=True), organisation=ORG)
            created = time.perf_counter()
            runner = CampaignRunner(store=store, catalogue=catalogue, registry=registry, publisher=sessions[1],
                                    runner_id="bench", poll_interval=0.01)
            while (status := await service.status(campaign.id)).campaign.active:
                await runner.tick()
            finished = time.perf_counter()
            await core.close()
        finally:
            for s in sessions:
                await s.close()
        async with registry.engine.connect() as conn:
            per_device = (await conn.execute(select(func.count(), func.count(func.distinct(CommandRow.device)))
                                             .where(CommandRow.name == "update_firmware"))).one()
    return {"devices": args.devices, "waves": len(status.waves), "state": status.campaign.state.value,
            "succeeded": status.counts["SUCCEEDED"], "commands": per_device[0], "devices_commanded": per_device[1],
            "create_s": round(created - started, 2), "run_s": round(finished - created, 2),
            "devices_per_s": round(args.devices / (finished - created), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--concentrators", type=int, default=3)
    parser.add_argument("--feeders", type=int, default=20)
    parser.add_argument("--groups-per-wave", type=int, default=5)
    parser.add_argument("--canary", type=int, default=10)
    parser.add_argument("--max-in-flight", type=int, default=200)
    parser.add_argument("--per-feeder", type=int, default=50)
    parser.add_argument("--registry-url", default=None, help="default: a fresh SQLite file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gw-bench-campaign-") as tmpdir:
        tmp = Path(tmpdir)
        concentrators = [Account(username=f"conc-{c}", password=f"conc-{c}-pw", role="concentrator")
                         for c in range(1, args.concentrators + 1)]
        broker = LocalMosquitto(directory=tmp / "mqtt", port=free_port(), accounts=[CLOUD, *concentrators])
        broker.start()
        try:
            figures = asyncio.run(_bench(broker, args.registry_url or f"sqlite+aiosqlite:///{tmp / 'r.db'}", args))
        finally:
            broker.stop()
    for key, value in figures.items():
        print(f"{key:>18}: {value}")


if __name__ == "__main__":
    main()
