"""A firmware download cut mid-way resumes without corruption and without fetching again what was
on disk: the `gridwire concentrator run` process SIGKILLed, and the broker restarted."""

from __future__ import annotations

import asyncio
import hashlib
import sys
from pathlib import Path

from broker.schemas.command import CommandStatus
from broker.schemas.firmware import SignedManifest
from edge.concentrator import Concentrator
from edge.config import load_config
from edge.dlms import SecurityMode
from gridwire.procs import ManagedProcess
from gridwire.services import LocalMosquitto
from tests.edge.ota.conftest import (
    IMAGE,
    Cloud,
    Keys,
    chunks_on_disk,
    dlms_entry,
    simulator,
    update,
    wait_for,
    write_config,
)

CHUNK = 8192
CHUNKS = -(-len(IMAGE) // CHUNK)
BLOCKS = -(-len(IMAGE) // 1024)
HOLD_AFTER = 5


def requested_after(cloud: Cloud, start: int) -> set[int]:
    return {offset // CHUNK for _, offset in cloud.requests[start:]}


async def test_sigkilled_concentrator_resumes_the_download_and_finishes_the_commands(
        tmp_path: Path, mosquitto: LocalMosquitto, keys: Keys, cloud: Cloud, signed: SignedManifest) -> None:
    sha = signed.manifest.sha256
    async with simulator(SecurityMode.LLS, name="m-1") as m1, simulator(SecurityMode.HLS_GMAC, name="m-2") as m2:
        config = write_config(tmp_path / "conc", broker=mosquitto, keys=keys, chunk_size=CHUNK,
                              meters=[dlms_entry("m-1", m1), dlms_entry("m-2", m2)])
        cache = tmp_path / "conc" / "firmware"
        proc = ManagedProcess(argv=[sys.executable, "-m", "gridwire.cli", "concentrator", "run", str(config),
                                    "--log-level", "INFO"], log=tmp_path / "conc" / "concentrator.log")
        cloud.server.hold_after = HOLD_AFTER
        proc.start()
        try:
            await cloud.online()
            answers = [await cloud.send("m-1", "update_firmware", update(signed)),
                       await cloud.send("m-2", "update_firmware", update(signed))]
            await wait_for(lambda: len(chunks_on_disk(cache, sha)) == HOLD_AFTER, what="chunks on disk")
            proc.kill()
            on_disk = chunks_on_disk(cache, sha)
            before = len(cloud.requests)

            cloud.server.hold_after = None
            cloud.server.gate.set()
            proc.start()
            # The broker hands the unacknowledged commands to the restarted process, which answers them.
            results = await asyncio.wait_for(asyncio.gather(*answers), 60)
        finally:
            proc.stop()
        assert [r.status for r in results] == [CommandStatus.SUCCEEDED] * 2, [r.error for r in results]
        assert requested_after(cloud, before).isdisjoint(on_disk)
        assert requested_after(cloud, before) | on_disk == set(range(CHUNKS))
        cached = cache / f"{sha}.bin"
        assert hashlib.sha256(cached.read_bytes()).hexdigest() == sha
        assert not list(cache.glob("*.part")) and not list(cache.glob("*.chunks"))
        for sim in (m1, m2):
            assert sim.model.firmware.version == "2.1.0"
            assert sim.model.firmware.image() == IMAGE
            assert sim.model.firmware.blocks_received == BLOCKS


async def test_broker_restart_mid_download_resumes_without_fetching_chunks_on_disk(
        tmp_path: Path, mosquitto: LocalMosquitto, keys: Keys, cloud: Cloud, signed: SignedManifest) -> None:
    sha = signed.manifest.sha256
    async with simulator(SecurityMode.LLS, name="m-1") as m1:
        config = write_config(tmp_path / "conc", broker=mosquitto, keys=keys, chunk_size=CHUNK, request_timeout=1.0,
                              meters=[dlms_entry("m-1", m1)])
        conc = Concentrator.from_config(load_config(config))
        stop = asyncio.Event()
        task = asyncio.create_task(conc.run(stop), name="concentrator")
        cache = tmp_path / "conc" / "firmware"
        cloud.server.hold_after = HOLD_AFTER
        try:
            await cloud.online()
            answer = await cloud.send("m-1", "update_firmware", update(signed))
            await wait_for(lambda: len(chunks_on_disk(cache, sha)) == HOLD_AFTER, what="chunks on disk")
            on_disk = chunks_on_disk(cache, sha)
            before = len(cloud.requests)
            mosquitto.restart()
            cloud.server.hold_after = None
            cloud.server.gate.set()
            result = await asyncio.wait_for(answer, 60)
        finally:
            stop.set()
            await asyncio.wait_for(task, 20)
        assert result.status is CommandStatus.SUCCEEDED, result.error
        assert requested_after(cloud, before).isdisjoint(on_disk)
        assert conc.firmware.downloader.downloads == 1
        assert hashlib.sha256((cache / f"{sha}.bin").read_bytes()).hexdigest() == sha
        assert m1.model.firmware.version == "2.1.0" and m1.model.firmware.image() == IMAGE
