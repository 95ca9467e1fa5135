"""The concentrator updates itself (issue 15 items 3-4), every part a real process: the
supervisor (``gridwire concentrator supervise``) runs the concentrator, which reads a DLMS
simulator every second into its outbox and forwards over a real Mosquitto to a cloud that
confirms each message; an ``update_firmware`` for the concentrator itself carries a signed
``concentrator-software`` manifest, the package comes by the chunk transfer, is unpacked beside
the running tree and switched to by an atomic symlink swap.

- A to B: the command is answered by B after its health check, and the outbox's sequence
  numbers arrive without a gap, each reading once, before, during and after;
- a broken B (it cannot reach the broker) is rolled back to A by itself; A answers ROLLED_BACK
  with the reason, and readings keep flowing without a gap;
- a tampered manifest or package is refused before anything is unpacked;
- SIGKILL at any moment of installing and switching leaves a tree to start, A or B.

The "versions" are small trees whose ``bin/gridwire`` runs this checkout's ``gridwire``: the
mechanism (download, unpack, links, supervisor, health check, rollback) is the real one."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tarfile
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from broker import topics
from broker.schemas import SEQ_PROPERTY, DeliveryAck
from broker.schemas.firmware import CONCENTRATOR_SOFTWARE, FirmwareManifest, SignedManifest
from broker.session import Message, MqttSession
from cloud.core.commands import CommandStore
from cloud.core.dispatcher import CoreDispatcher
from cloud.deadletters import DeadLetterStore
from cloud.firmware.campaign_runner import CampaignRunner
from cloud.firmware.campaign_store import CampaignStore
from cloud.firmware.campaigns import CampaignService
from cloud.firmware.catalogue import FirmwareCatalogue
from cloud.firmware.schemas import CampaignCreate, CampaignStatus
from cloud.migrations import migrate
from cloud.registry import DeviceCreate, DeviceType, FunctionGroup, GridPosition, OrganisationCreate, Protocol, Registry
from edge.dlms import SecurityMode
from edge.selfupdate.releases import FACTORY, InstallError, Releases
from firmware_ota.campaign_logic import TargetState
from firmware_ota.signing import sign
from firmware_ota.store import FirmwareStore
from gridwire.services import LocalMosquitto
from tests.cloud.core.harness import FAST_RETRY, session_for
from tests.edge.ota.conftest import CID, Cloud, Keys, dlms_entry, simulator, update, wait_for, write_config
from tests.fixtures.waiting import poll_until

MODEL = "gridwire-concentrator"
ORG = "utility"
HEALTH_DEADLINE = 30
# Where B is meant to fail its health check, it fails only at the deadline: a short one keeps those
# tests quick (a healthy version passes in a few seconds; the campaign test's good 2.0.0 must too).
BROKEN_HEALTH_DEADLINE = 8
CAMPAIGN_HEALTH_DEADLINE = 15


def make_tree(directory: Path, *, config: Path | None = None) -> Path:
    """A version's tree: ``bin/gridwire`` runs this checkout's gridwire; with ``config``, one
    that runs the concentrator on that config whatever it is asked (a broken version)."""
    bin_dir = directory / "bin"
    bin_dir.mkdir(parents=True)
    entry = bin_dir / "gridwire"
    args = f'concentrator run "{config}" --log-level INFO' if config else '"$@"'
    entry.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m gridwire.cli {args}\n')
    entry.chmod(0o755)
    (directory / "VERSION.txt").write_text(directory.name)
    return directory


def package(tree: Path, out: Path) -> bytes:
    with tarfile.open(out, "w:gz") as tar:
        for path in sorted(tree.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(tree)), recursive=False)
    return out.read_bytes()


def software_manifest(image: bytes, version: str, *, kind: str = CONCENTRATOR_SOFTWARE) -> FirmwareManifest:
    return FirmwareManifest(firmware_id=f"concentrator-{version}", version=version, device_models=[MODEL],
                            image_identifier=f"gridwire-{version}", size=len(image),
                            sha256=hashlib.sha256(image).hexdigest(), kind=kind,
                            created=datetime(2026, 12, 1, tzinfo=UTC))


def publish_version(store: FirmwareStore, keys: Keys, tree: Path, tmp: Path) -> SignedManifest:
    image = package(tree, tmp / f"{tree.name}.tar.gz")
    signed = sign(software_manifest(image, tree.name), keys.private)
    store.add(image=image, signed=signed, trusted=keys.trusted)
    return signed


@dataclass
class Confirmer:
    """The cloud's end of forwarding: takes every outbox message, confirms it, keeps its seq."""

    session: MqttSession
    seqs: set[int] = field(default_factory=set)
    reading_seqs: dict[str, set[int]] = field(default_factory=dict)

    async def on_message(self, message: Message) -> None:
        seq = int(message.user_properties[SEQ_PROPERTY])
        self.seqs.add(seq)
        if message.topic.endswith("/meterReading"):
            self.reading_seqs.setdefault(json.loads(message.payload)["meterReadingIdentifier"], set()).add(seq)
        await self.session.publish(topics.concentrator_ack(CID), DeliveryAck.of([seq]).to_wire(), qos=1)

    def readings(self) -> int:
        return len(self.reading_seqs)

    def assert_none_lost_nor_duplicated(self) -> None:
        assert self.seqs == set(range(1, max(self.seqs) + 1)), "a gap in the outbox's sequence numbers"
        twice = {reading: seqs for reading, seqs in self.reading_seqs.items() if len(seqs) > 1}
        assert not twice, f"readings put in the outbox twice: {twice}"


@asynccontextmanager
async def confirming(mosquitto: LocalMosquitto) -> AsyncIterator[Confirmer]:
    session = MqttSession(client_id=f"confirm-{uuid.uuid4().hex[:8]}", host=mosquitto.host, port=mosquitto.port,
                          session_expiry=600, **mosquitto.credentials("gridwire-cloud"))
    await session.connect()
    confirmer = Confirmer(session=session)
    await session.subscribe(f"concentrator/{CID}/smartMeterMessage/#", confirmer.on_message)
    try:
        yield confirmer
    finally:
        await session.close()


@dataclass
class Appliance:
    config: Path
    software: Path
    factory: Path
    process: subprocess.Popen[bytes]

    @property
    def releases(self) -> Releases:
        return Releases(self.software, factory=self.factory)

    def log(self) -> str:
        return (self.config.parent / "supervisor.log").read_text()


@asynccontextmanager
async def appliance(tmp_path: Path, mosquitto: LocalMosquitto, keys: Keys, meters: list[str], *,
                    health_deadline: float = HEALTH_DEADLINE) -> AsyncIterator[Appliance]:
    config = write_config(tmp_path / "conc", broker=mosquitto, keys=keys, meters=meters)
    config.write_text(f'confirm_timeout = 5\n{config.read_text()}\n\n'
                      f'[software]\nmodel = "{MODEL}"\nhealth_deadline = {health_deadline}\n')
    factory = make_tree(tmp_path / "factory")
    software = tmp_path / "software"
    log = (config.parent / "supervisor.log").open("wb")
    process = subprocess.Popen([str(factory / "bin" / "gridwire"), "concentrator", "supervise", str(config),
                                "--software-dir", str(software), "--factory", str(factory)],
                               stdout=log, stderr=subprocess.STDOUT)
    running = Appliance(config=config, software=software, factory=factory, process=process)
    try:
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(process.wait, 40)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait)
        log.close()


async def retained_status(mosquitto: LocalMosquitto) -> str:
    """The software version in the concentrator's retained status."""
    got: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def on_status(message: Message) -> None:
        if not got.done():
            got.set_result(json.loads(message.payload)["softwareVersion"])

    async with MqttSession(client_id=f"status-{uuid.uuid4().hex[:6]}", host=mosquitto.host, port=mosquitto.port,
                           **mosquitto.credentials("gridwire-cloud")) as session:
        await session.subscribe(topics.concentrator_status(CID), on_status)
        return await asyncio.wait_for(got, 10)


async def readings_flow(confirmer: Confirmer, more: int) -> None:
    start = confirmer.readings()
    await wait_for(lambda: confirmer.readings() >= start + more, timeout=60, what=f"{more} more readings")


async def test_update_from_a_to_b_with_readings_flowing_none_lost_nor_duplicated(
        tmp_path: Path, mosquitto: LocalMosquitto, keys: Keys, store: FirmwareStore, cloud: Cloud) -> None:
    b = make_tree(tmp_path / "versions" / "2.0.0")
    signed = publish_version(store, keys, b, tmp_path)
    async with simulator(SecurityMode.LLS, name="meter-su-1") as sim, confirming(mosquitto) as confirmer, \
            appliance(tmp_path, mosquitto, keys, [dlms_entry("meter-su-1", sim, interval=1.0)]) as box:
        await cloud.online()
        await readings_flow(confirmer, 3)

        answer = await cloud.run(CID, "update_firmware", update(signed), timeout=150)
        assert answer.status == "SUCCEEDED", (answer, box.log())
        assert answer.result == {"firmwareVersion": "2.0.0", "imageSha256": signed.manifest.sha256,
                                 "transferred": True, "previousVersion": FACTORY}
        version, tree = box.releases.current()
        assert (version, (tree / "VERSION.txt").read_text()) == ("2.0.0", "2.0.0")
        assert box.releases.state().phase == "committed"  # type: ignore[union-attr]
        assert cloud.births >= 2  # B announced itself, with its version
        assert await retained_status(mosquitto) == "gridwire-2.0.0"

        # Asked again (a campaign's retry): already running it, nothing done.
        again = await cloud.run(CID, "update_firmware", update(signed), timeout=60)
        assert again.status == "SUCCEEDED" and again.result["firmwareVersion"] == "2.0.0", again
        await readings_flow(confirmer, 3)
        await wait_for(lambda: max(confirmer.seqs) == len(confirmer.seqs), what="every message confirmed")
    confirmer.assert_none_lost_nor_duplicated()


async def test_a_broken_b_is_rolled_back_to_a_by_itself(tmp_path: Path, mosquitto: LocalMosquitto, keys: Keys,
                                                        store: FirmwareStore, cloud: Cloud) -> None:
    # B runs the concentrator on a config whose broker port nobody listens on: it reads its
    # meter into the same outbox, but never connects, so it cannot pass its health check.
    conc = tmp_path / "conc"
    conc.mkdir()
    broken_config = conc / "broken.toml"
    b = make_tree(tmp_path / "versions" / "2.0.1", config=broken_config)
    signed = publish_version(store, keys, b, tmp_path)
    async with simulator(SecurityMode.LLS, name="meter-su-2") as sim, confirming(mosquitto) as confirmer, \
            appliance(tmp_path, mosquitto, keys, [dlms_entry("meter-su-2", sim, interval=1.0)],
                      health_deadline=BROKEN_HEALTH_DEADLINE) as box:
        broken_config.write_text(box.config.read_text().replace(f"port = {mosquitto.port}", "port = 9"))
        await cloud.online()
        await readings_flow(confirmer, 3)

        answer = await cloud.run(CID, "update_firmware", update(signed), timeout=180)
        assert answer.status == "FAILED" and answer.error is not None, (answer, box.log())
        assert answer.error.code == "ROLLED_BACK"
        assert "2.0.1 failed its health check" in answer.error.message
        assert "not connected to the broker" in answer.error.message
        assert box.releases.current()[0] == FACTORY
        assert box.releases.state().phase == "reported"  # type: ignore[union-attr]
        assert "rolled back from 2.0.1 to factory" in box.log()
        # What B read while it was on trial waited in the outbox; A forwarded it.
        await readings_flow(confirmer, 3)
        await wait_for(lambda: max(confirmer.seqs) == len(confirmer.seqs), what="every message confirmed")
    confirmer.assert_none_lost_nor_duplicated()


# B's own outbox steps (edge/outbox_schema.py), in B's tree: an additive one (a column with a
# default), and one declared not additive (its ``format`` column says how B's payloads are to be
# read: the previous version, ignoring it, must not read B's outbox) with its downgrade.
B_OUTBOX_STEPS = {
    "additive": 'Migration(up="ALTER TABLE outbox ADD COLUMN origin TEXT NOT NULL DEFAULT \'meter\';", '
                'additive=True)',
    "not additive": 'Migration(up="ALTER TABLE outbox ADD COLUMN format INTEGER NOT NULL DEFAULT 2;", '
                    'additive=False, down="ALTER TABLE outbox DROP COLUMN format;")',
}
B_RELEASE = """
import sys
from edge import outbox_schema
from edge.outbox_schema import Migration
outbox_schema.MIGRATIONS.append({step})
from gridwire.cli import main
sys.argv[0] = "gridwire"
main()
"""


def outbox_schema_of(path: Path) -> tuple[int, int, set[str]]:
    """The outbox's recorded (version, readable_from) and its table's columns."""
    import sqlite3

    db = sqlite3.connect(path)
    try:
        version, readable_from = db.execute("SELECT version, readable_from FROM outbox_schema").fetchone()
        return version, readable_from, {row[1] for row in db.execute("PRAGMA table_info(outbox)")}
    finally:
        db.close()


@pytest.mark.parametrize("step", list(B_OUTBOX_STEPS))
async def test_a_b_with_a_newer_outbox_schema_rolled_back_a_forwards_every_reading_b_wrote(
        tmp_path: Path, mosquitto: LocalMosquitto, keys: Keys, store: FirmwareStore, cloud: Cloud,
        step: str) -> None:
    # B migrates the outbox to its schema 2 and reads its meter into it, but cannot reach the
    # broker: rolled back. Additive: A reads the outbox as B left it. Not additive: the
    # supervisor runs B's recorded downgrade before A starts. Either way A forwards B's readings.
    conc = tmp_path / "conc"
    conc.mkdir()
    broken_config = conc / "broken.toml"
    version = "2.1.0" if step == "additive" else "2.1.1"
    b = make_tree(tmp_path / "versions" / version)
    (b / "release.py").write_text(B_RELEASE.format(step=B_OUTBOX_STEPS[step]))
    (b / "bin" / "gridwire").write_text(
        f'#!/bin/sh\nexec "{sys.executable}" "$(dirname "$0")/../release.py" concentrator run "{broken_config}" '
        '--log-level INFO\n')
    signed = publish_version(store, keys, b, tmp_path)
    async with simulator(SecurityMode.LLS, name="meter-su-4") as sim, confirming(mosquitto) as confirmer, \
            appliance(tmp_path, mosquitto, keys, [dlms_entry("meter-su-4", sim, interval=1.0)],
                      health_deadline=BROKEN_HEALTH_DEADLINE) as box:
        broken_config.write_text(box.config.read_text().replace(f"port = {mosquitto.port}", "port = 9"))
        outbox = box.config.parent / "outbox.sqlite"
        await cloud.online()
        await readings_flow(confirmer, 3)

        answer = await cloud.run(CID, "update_firmware", update(signed), timeout=180)
        assert answer.status == "FAILED" and answer.error is not None, (answer, box.log())
        assert answer.error.code == "ROLLED_BACK", answer
        assert box.releases.current()[0] == FACTORY
        assert "migrated to schema 2" in box.log()
        if step == "additive":
            assert outbox_schema_of(outbox)[:2] == (2, 1)
            assert "origin" in outbox_schema_of(outbox)[2]
            assert "downgraded" not in box.log()
        else:
            assert outbox_schema_of(outbox)[:2] == (1, 1)
            assert "format" not in outbox_schema_of(outbox)[2]
            assert "downgraded from schema 2 to 1" in box.log()
        # What B read while it was on trial waited in the outbox; A forwarded it.
        await readings_flow(confirmer, 3)
        await wait_for(lambda: max(confirmer.seqs) == len(confirmer.seqs), what="every message confirmed")
    confirmer.assert_none_lost_nor_duplicated()


@pytest.mark.parametrize("tamper", ["manifest", "package", "kind"])
async def test_a_tampered_or_unsigned_package_is_refused_before_anything_is_unpacked(
        tmp_path: Path, mosquitto: LocalMosquitto, keys: Keys, store: FirmwareStore, cloud: Cloud,
        tamper: str) -> None:
    b = make_tree(tmp_path / "versions" / "2.0.2")
    image = package(b, tmp_path / "b.tar.gz")
    if tamper == "manifest":
        good = sign(software_manifest(image, "2.0.2"), keys.private)
        signed = good.model_copy(update={"manifest": good.manifest.model_copy(update={"version": "2.0.3"})})
        expected = "SIGNATURE_INVALID"
    elif tamper == "package":
        signed = sign(software_manifest(image, "2.0.2"), keys.private)
        store.add(image=image, signed=signed, trusted=keys.trusted)
        # The bytes served are not the signed ones.
        store.image_path(signed.manifest.firmware_id).write_bytes(image[:-1] + bytes([image[-1] ^ 0xFF]))
        expected = "SIGNATURE_INVALID"
    else:
        signed = sign(software_manifest(image, "2.0.2", kind="meter-firmware"), keys.private)
        store.add(image=image, signed=signed, trusted=keys.trusted)
        expected = "KIND_MISMATCH"
    async with appliance(tmp_path, mosquitto, keys, []) as box:
        await cloud.online()
        answer = await cloud.run(CID, "update_firmware", update(signed), timeout=90)
        assert answer.status == "FAILED" and answer.error is not None and answer.error.code == expected, answer
        assert not (box.software / "releases").exists() or not any((box.software / "releases").iterdir())
        assert box.releases.current()[0] == FACTORY and box.releases.state() is None
        assert box.process.poll() is None  # still running A


SWAPPER = """
import sys
from pathlib import Path
from edge.selfupdate.releases import Releases
releases = Releases(Path(sys.argv[1]), factory=Path(sys.argv[3]))
while True:
    version = "2.0.0" if releases.current()[0] == "1.0.0" else "1.0.0"
    releases.install(Path(sys.argv[2]) / f"{version}.tar.gz", version)
    releases.switch(version)
"""


def test_sigkill_while_installing_and_switching_leaves_a_or_b_to_start(tmp_path: Path) -> None:
    packages = tmp_path / "packages"
    packages.mkdir()
    for version in ("1.0.0", "2.0.0"):
        tree = tmp_path / "trees" / version
        (tree / "bin").mkdir(parents=True)
        entry = tree / "bin" / "gridwire"
        entry.write_text(f'#!/bin/sh\necho "$GRIDWIRE_SOFTWARE_VERSION {version}" > "{tmp_path}/started"\n')
        entry.chmod(0o755)
        for n in range(50):   # enough files that a kill lands mid-unpack too
            (tree / f"lib-{n}.py").write_text("x = 1\n" * 200)
        package(tree, packages / f"{version}.tar.gz")
    software = tmp_path / "software"
    factory = make_tree(tmp_path / "factory")
    rng = random.Random(15)
    seen: set[str] = set()
    for _ in range(20):
        swapper = subprocess.Popen([sys.executable, "-c", SWAPPER, str(software), str(packages), str(factory)])
        try:
            swapper.wait(timeout=rng.uniform(0.15, 0.9))
        except subprocess.TimeoutExpired:
            pass
        swapper.send_signal(signal.SIGKILL)
        swapper.wait()
        version, tree = Releases(software, factory=factory).current()
        seen.add(version)
        assert version in ("1.0.0", "2.0.0", FACTORY)
        assert os.access(tree / "bin" / "gridwire", os.X_OK)
    assert seen & {"1.0.0", "2.0.0"}
    # And the supervisor starts it: the started version says which.
    done = subprocess.run([sys.executable, "-m", "gridwire.cli", "concentrator", "supervise", "unused.toml",
                           "--software-dir", str(software), "--factory", str(factory)], timeout=60,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    version = Releases(software, factory=factory).current()[0]
    assert (tmp_path / "started").read_text().split() == [version, version]


def unsafe(tmp_path: Path, name: str, *, symlink_to: str | None = None, under_link: bool = False) -> Path:
    out = tmp_path / f"unsafe-{uuid.uuid4().hex[:6]}.tar"
    with tarfile.open(out, "w") as tar:
        if under_link:
            link = tarfile.TarInfo("lib")
            link.type, link.linkname = tarfile.SYMTYPE, "/etc"
            tar.addfile(link)
        info = tarfile.TarInfo(name)
        if symlink_to is not None:
            info.type, info.linkname = tarfile.SYMTYPE, symlink_to
            tar.addfile(info)
        else:
            data = b"#!/bin/sh\n"
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    return out


@pytest.mark.parametrize(("name", "under_link", "why"), [
    ("../escape", False, "outside the tree"), ("/etc/escape", False, "outside the tree"),
    ("lib/passwd", True, "under a symlink")])
def test_unsafe_members_are_refused_and_nothing_stays(tmp_path: Path, name: str, under_link: bool,
                                                      why: str) -> None:
    releases = Releases(tmp_path / "software", factory=make_tree(tmp_path / "factory"))
    with pytest.raises(InstallError, match=why):
        releases.install(unsafe(tmp_path, name, under_link=under_link), "9.9.9")
    assert list((tmp_path / "software" / "releases").iterdir()) == []


def test_a_package_without_an_entry_point_is_refused(tmp_path: Path) -> None:
    releases = Releases(tmp_path / "software", factory=make_tree(tmp_path / "factory"))
    with pytest.raises(InstallError, match="no executable bin/gridwire"):
        releases.install(unsafe(tmp_path, "lib/x.py"), "9.9.9")
    assert releases.current()[0] == FACTORY


async def test_campaigns_update_the_concentrator_and_count_a_rollback_failed(
        tmp_path: Path, mosquitto: LocalMosquitto, keys: Keys, store: FirmwareStore, cloud: Cloud) -> None:
    """Through the real campaign runner and core: a campaign of a broken 2.0.1 ends with the
    concentrator FAILED (ROLLED_BACK) and back on A; a campaign of 2.0.0 then succeeds and the
    registry records the version. Readings flow throughout, none lost nor put twice."""
    conc = tmp_path / "conc"
    conc.mkdir()
    broken = publish_version(store, keys, make_tree(tmp_path / "versions" / "2.0.1", config=conc / "broken.toml"),
                             tmp_path)
    good = publish_version(store, keys, make_tree(tmp_path / "versions" / "2.0.0"), tmp_path)
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'platform.sqlite'}"
    async with simulator(SecurityMode.LLS, name="meter-su-3") as sim, confirming(mosquitto) as confirmer, \
            campaigns(mosquitto, db_url, [broken, good]) as (service, runner, registry), \
            appliance(tmp_path, mosquitto, keys, [dlms_entry("meter-su-3", sim, interval=1.0)],
                      health_deadline=CAMPAIGN_HEALTH_DEADLINE) as box:
        (conc / "broken.toml").write_text(box.config.read_text().replace(f"port = {mosquitto.port}", "port = 9"))
        await cloud.online()
        await readings_flow(confirmer, 3)

        async def campaign(signed: SignedManifest, done: Callable[[CampaignStatus], bool]) -> CampaignStatus:
            spec = CampaignCreate(name=f"concentrators {signed.manifest.version}",
                                  firmware_id=signed.manifest.firmware_id, devices=[CID], max_attempts=1,
                                  start=True)
            created = await service.create(spec, organisation=ORG)

            async def tick() -> CampaignStatus:
                await runner.tick()
                return await service.status(created.id)

            return await poll_until(tick, done, timeout=180, interval=0.5,
                                    what=f"the campaign of {signed.manifest.version}")

        failed = await campaign(broken, lambda s: s.counts[TargetState.FAILED] == 1)
        assert [(f.device, f.failure_code) for f in failed.failed] == [(CID, "ROLLED_BACK")], box.log()
        assert "not connected to the broker" in (failed.failed[0].failure_reason or "")
        assert box.releases.current()[0] == FACTORY

        succeeded = await campaign(good, lambda s: s.counts[TargetState.SUCCEEDED] == 1)
        assert succeeded.counts[TargetState.FAILED] == 0, box.log()
        assert box.releases.current()[0] == "2.0.0"
        assert (await registry.get_device(CID)).firmware_version == "2.0.0"
        await readings_flow(confirmer, 3)
        await wait_for(lambda: max(confirmer.seqs) == len(confirmer.seqs), what="every message confirmed")
    confirmer.assert_none_lost_nor_duplicated()


@asynccontextmanager
async def campaigns(broker: LocalMosquitto, db_url: str, firmware: list[SignedManifest]) -> AsyncIterator[
        tuple[CampaignService, CampaignRunner, Registry]]:
    """The cloud half: a migrated registry with the concentrator in it, the firmware catalogued,
    the real core and a campaign runner."""
    await migrate(db_url)
    async with AsyncExitStack() as exits:
        registry = await exits.enter_async_context(Registry(url=db_url))
        await registry.add_organisation(OrganisationCreate(identification=ORG, name="Utility"))
        await registry.create_device(DeviceCreate(identification=CID, device_type=DeviceType.CONCENTRATOR,
                                                  protocol=Protocol.MQTT, model=MODEL, firmware_version=FACTORY,
                                                  grid=GridPosition(feeder="F1", substation="S1")), owner=ORG)
        await registry.grant(CID, ORG, FunctionGroup.FIRMWARE)
        catalogue = FirmwareCatalogue(registry.engine)
        for signed in firmware:
            await catalogue.record(signed, uploaded_by="ops")
        core_session = await exits.enter_async_context(session_for(broker, "gridwire-cloud"))
        dead_letters = DeadLetterStore(engine=registry.engine)
        await dead_letters.create_schema()
        core = CoreDispatcher(session=core_session, registry=registry, store=CommandStore(registry.engine),
                              dead_letters=dead_letters, retry=FAST_RETRY, pump_interval=0.05)
        await core.start()
        exits.push_async_callback(core.close)
        store = CampaignStore(registry.engine)
        runner_session = await exits.enter_async_context(session_for(broker, "gridwire-cloud"))
        runner = CampaignRunner(store=store, catalogue=catalogue, registry=registry, publisher=runner_session,
                                runner_id="test-runner", poll_interval=0.05)
        yield CampaignService(store=store, catalogue=catalogue, registry=registry), runner, registry


def test_prune_keeps_current_and_previous_only(tmp_path: Path) -> None:
    releases = Releases(tmp_path / "software", factory=make_tree(tmp_path / "factory"))
    for version in ("1.0.0", "2.0.0", "3.0.0"):
        tree = make_tree(tmp_path / "trees" / version)
        releases.install(Path(shutil.make_archive(str(tmp_path / version), "gztar", tree)), version)
        releases.switch(version)
    assert releases.prune() == ["1.0.0"]
    assert sorted(p.name for p in (tmp_path / "software" / "releases").iterdir()) == ["2.0.0", "3.0.0"]
    assert (releases.current()[0], releases.previous()[0]) == ("3.0.0", "2.0.0")


def test_an_unreadable_state_is_moved_aside_and_the_current_version_runs(tmp_path: Path) -> None:
    software = tmp_path / "software"
    software.mkdir()
    (software / "update.json").write_text('{"phase": "tri')   # a torn write cannot happen; a bad disk can
    done = subprocess.run([sys.executable, "-m", "gridwire.cli", "concentrator", "supervise", "unused.toml",
                           "--software-dir", str(software), "--factory", str(make_release_probe(tmp_path))],
                          timeout=60, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "started").read_text().split() == [FACTORY]
    assert (software / "update.json.bad").exists() and not (software / "update.json").exists()


def make_release_probe(tmp_path: Path) -> Path:
    """A tree whose bin/gridwire only writes down the version it was started as."""
    tree = tmp_path / "probe"
    (tree / "bin").mkdir(parents=True)
    entry = tree / "bin" / "gridwire"
    entry.write_text(f'#!/bin/sh\necho "$GRIDWIRE_SOFTWARE_VERSION" > "{tmp_path}/started"\n')
    entry.chmod(0o755)
    return tree
