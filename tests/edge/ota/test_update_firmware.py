"""update_firmware on a concentrator (in this process) against the real broker, ChunkServer and
DLMS simulators over TCP: one download for many meters, every failure code, idempotence, resume."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from broker.schemas import DeviceEvent, DeviceEventType
from broker.schemas.command import CommandStatus
from broker.schemas.firmware import SignedManifest
from edge.concentrator import Concentrator
from edge.config import load_config
from edge.dlms import DlmsMeterSimulator, SecurityMode
from edge.dlms.sim_firmware import ImageTransferStatus, SimFirmware
from firmware_ota.signing import generate_key, sign
from firmware_ota.store import FirmwareStore
from gridwire.services import LocalMosquitto
from tests.edge.ota.conftest import (
    IMAGE,
    Cloud,
    Keys,
    dlms_entry,
    manifest_for,
    simulator,
    update,
    wait_for,
    write_config,
)

CHUNKS = -(-len(IMAGE) // 8192)
BLOCKS = -(-len(IMAGE) // 1024)


@pytest.fixture
async def meters() -> AsyncIterator[list[DlmsMeterSimulator]]:
    sims = [simulator(SecurityMode.LLS, name="m-1"), simulator(SecurityMode.LLS, name="m-2"),
            simulator(SecurityMode.HLS_GMAC, name="m-3")]
    for sim in sims:
        await sim.start()
    yield sims
    for sim in sims:
        await sim.stop()


@pytest.fixture
async def concentrator(tmp_path: Path, mosquitto: LocalMosquitto, keys: Keys, cloud: Cloud,
                       meters: list[DlmsMeterSimulator]) -> AsyncIterator[Concentrator]:
    entries = [dlms_entry(sim.name, sim) for sim in meters]
    conc = Concentrator.from_config(load_config(write_config(tmp_path / "conc", broker=mosquitto, keys=keys,
                                                        meters=entries)))
    stop = asyncio.Event()
    task = asyncio.create_task(conc.run(stop), name="concentrator")
    await cloud.online()
    yield conc
    stop.set()
    await asyncio.wait_for(task, 20)


async def test_one_download_serves_every_meter_and_a_rerun_sends_nothing(
        cloud: Cloud, concentrator: Concentrator, meters: list[DlmsMeterSimulator], signed: SignedManifest) -> None:
    answers = await asyncio.gather(*(cloud.run(sim.name, "update_firmware", update(signed)) for sim in meters))
    for answer in answers:
        assert answer.status is CommandStatus.SUCCEEDED, answer.error
        assert answer.result == {"firmwareVersion": "2.1.0", "imageSha256": signed.manifest.sha256,
                                 "transferred": True}
    assert [sim.model.firmware.version for sim in meters] == ["2.1.0"] * 3
    assert cloud.server.chunks_served == CHUNKS and len(cloud.requests) == CHUNKS
    assert concentrator.firmware.downloader.downloads == 1
    cached = concentrator.firmware.downloader.cached(signed.manifest.sha256)
    assert cached is not None and cached.read_bytes() == IMAGE

    again = await cloud.run("m-1", "update_firmware", update(signed))
    assert again.status is CommandStatus.SUCCEEDED and again.result["transferred"] is False
    assert meters[0].model.firmware.blocks_received == BLOCKS and meters[0].model.firmware.activations == 1
    assert cloud.server.chunks_served == CHUNKS
    version = await cloud.run("m-3", "get_firmware_version", {})
    assert version.result == {"firmwareVersion": "2.1.0"}


async def test_untrusted_signature_and_tampered_image_are_refused_before_any_meter_transfer(
        cloud: Cloud, concentrator: Concentrator, meters: list[DlmsMeterSimulator], store: FirmwareStore,
        signed: SignedManifest) -> None:
    stranger, _ = generate_key()
    foreign = sign(manifest_for(IMAGE, firmware_id="foreign-1"), stranger)
    refused = await cloud.run("m-1", "update_firmware", update(foreign))
    assert refused.status is CommandStatus.FAILED and refused.error.code == "SIGNATURE_INVALID"
    assert "unknown signing key" in refused.error.message and cloud.requests == []

    path = store.image_path(signed.manifest.firmware_id)
    tampered = bytearray(path.read_bytes())
    tampered[5000] ^= 0x01
    path.write_bytes(bytes(tampered))
    answers = await asyncio.gather(*(cloud.run(sim.name, "update_firmware", update(signed)) for sim in meters))
    assert {(a.status, a.error.code) for a in answers} == {(CommandStatus.FAILED, "SIGNATURE_INVALID")}
    assert "sha256" in answers[0].error.message
    assert all(sim.model.firmware.blocks_received == 0 for sim in meters)
    assert all(sim.model.firmware.version == "1.0.0" for sim in meters)
    assert concentrator.firmware.downloader.cached(signed.manifest.sha256) is None


async def test_model_mismatch_and_bad_parameters(cloud: Cloud, concentrator: Concentrator, keys: Keys,
                                                 store: FirmwareStore) -> None:
    other = sign(manifest_for(IMAGE, firmware_id="gas-1", models=("GAS-METER",)), keys.private)
    answer = await cloud.run("m-1", "update_firmware", update(other))
    assert answer.error.code == "MODEL_MISMATCH" and "SIM-DLMS" in answer.error.message
    bad = await cloud.run("m-1", "update_firmware", {"signedManifest": {"manifest": {}}})
    assert bad.error.code == "INVALID_PARAMETERS"
    missing = await cloud.run("m-1", "update_firmware", {})
    assert missing.error.code == "INVALID_PARAMETERS"
    assert cloud.requests == []


async def test_verify_and_activation_failures_keep_the_old_version(
        cloud: Cloud, concentrator: Concentrator, meters: list[DlmsMeterSimulator], signed: SignedManifest) -> None:
    meters[0].model.firmware.fail_verify = True
    meters[1].model.firmware.fail_activate = True
    first, second = await asyncio.gather(cloud.run("m-1", "update_firmware", update(signed)),
                                         cloud.run("m-2", "update_firmware", update(signed)))
    assert (first.status, first.error.code) == (CommandStatus.FAILED, "VERIFY_FAILED")
    assert (second.status, second.error.code) == (CommandStatus.FAILED, "ACTIVATION_FAILED")
    assert meters[0].model.firmware.version == meters[1].model.firmware.version == "1.0.0"
    assert cloud.server.chunks_served == CHUNKS  # downloaded once for both
    # Each failure is a FIRMWARE_FAILED device event in the outbox, on its way to the cloud.
    events = [DeviceEvent.model_validate_json(m.payload) for m in concentrator.outbox.after(0, limit=10_000)
              if "/event/" in m.topic]
    assert sorted((e.device_id, e.event_type, e.detail["error"]) for e in events) == [
        ("m-1", DeviceEventType.FIRMWARE_FAILED, "VERIFY_FAILED"),
        ("m-2", DeviceEventType.FIRMWARE_FAILED, "ACTIVATION_FAILED")]
    assert {e.detail["firmwareId"] for e in events} == {signed.manifest.firmware_id}


async def test_transfer_cut_mid_blocks_fails_transient_and_the_retry_sends_only_the_rest(
        cloud: Cloud, concentrator: Concentrator, meters: list[DlmsMeterSimulator], signed: SignedManifest) -> None:
    sim = meters[0]
    sim.drop_after_frames = 40
    cut = await cloud.run("m-1", "update_firmware", update(signed))
    assert (cut.status, cut.error.code, cut.error.transient) == (CommandStatus.FAILED, "TRANSFER_FAILED", True)
    had = len(sim.model.firmware.blocks)
    assert 0 < had < BLOCKS and sim.model.firmware.status is ImageTransferStatus.INITIATED
    done = await cloud.run("m-1", "update_firmware", update(signed))
    assert done.status is CommandStatus.SUCCEEDED
    assert sim.model.firmware.blocks_received == BLOCKS  # nothing sent twice
    assert cloud.server.chunks_served == CHUNKS


async def test_polling_of_the_meter_pauses_during_the_transfer(
        tmp_path: Path, mosquitto: LocalMosquitto, keys: Keys, cloud: Cloud, signed: SignedManifest) -> None:
    async with simulator(SecurityMode.LLS, name="slow-1",
                         firmware=SimFirmware(block_size=1024, verify_seconds=0.6)) as sim:
        config = write_config(tmp_path / "conc-poll", broker=mosquitto, keys=keys,
                              meters=[dlms_entry("slow-1", sim, interval=0.05)])
        conc = Concentrator.from_config(load_config(config))
        stop = asyncio.Event()
        task = asyncio.create_task(conc.run(stop), name="concentrator")
        try:
            await cloud.online()
            await wait_for(lambda: sim.connections_accepted >= 3, what="the meter to be polled")
            pending = await cloud.send("slow-1", "update_firmware", update(signed))
            await wait_for(lambda: sim.model.firmware.status is ImageTransferStatus.VERIFICATION_INITIATED,
                           what="the meter to verify")
            connections = sim.connections_accepted
            assert conc.poller.lock_for("slow-1").locked()
            # Time let pass on purpose, to see nothing happen: polled every 50 ms otherwise, and
            # the verification alone lasts 600 ms.
            await asyncio.sleep(0.4)
            assert sim.connections_accepted == connections
            answer = await asyncio.wait_for(pending, 30)
            assert answer.status is CommandStatus.SUCCEEDED
            await wait_for(lambda: sim.connections_accepted > connections, what="polling to resume")
        finally:
            stop.set()
            await asyncio.wait_for(task, 20)
