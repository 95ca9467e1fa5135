"""Commands and firmware after an offline boot (issue 18): the concentrator is SIGKILLed mid-download,
and its link is gone when it starts again. Once the link is back, the broker hands it the
commands it had not acknowledged and those sent meanwhile: the download resumes from the chunks
on disk, and a command whose time to live passed while it was offline is answered EXPIRED, not run."""

from __future__ import annotations

import asyncio
import hashlib
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

from broker import topics
from broker.schemas.command import CommandResponse, CommandStatus, GenericCommand
from broker.schemas.firmware import SignedManifest
from broker.session import publish_properties
from edge.dlms import SecurityMode
from gridwire.procs import ManagedProcess
from gridwire.services import LocalMosquitto
from tests.edge.ota.conftest import (
    CID,
    IMAGE,
    RESPONSES,
    Cloud,
    Keys,
    chunks_on_disk,
    dlms_entry,
    simulator,
    update,
    wait_for,
    write_config,
)
from tests.fixtures.relay import TcpRelay

CHUNK = 8192
CHUNKS = -(-len(IMAGE) // CHUNK)
HOLD_AFTER = 5


async def send_expiring(cloud: Cloud, device: str, name: str, *, ttl: timedelta) -> asyncio.Future[CommandResponse]:
    """A command whose own expiry passes after ``ttl``; the broker keeps it far longer (300 s), so
    only the concentrator's check stands between it and the meter."""
    command = GenericCommand(deviceId=device, name=name, issuedAt=datetime.now(UTC),
                             expiresAt=datetime.now(UTC) + ttl)
    correlation = uuid.uuid4().bytes
    future: asyncio.Future[CommandResponse] = asyncio.get_running_loop().create_future()
    cloud.pending[correlation] = future
    await cloud.session.publish(topics.concentrator_command(CID), command.to_wire(), qos=1,
                                properties=publish_properties(correlation_data=correlation, response_topic=RESPONSES,
                                                              message_expiry=300))
    return future


def logged(log: Path, text: str, times: int = 1) -> bool:
    return log.exists() and log.read_text(errors="replace").count(text) >= times


async def test_cold_start_without_link_resumes_the_cut_download_and_refuses_expired_commands(
        tmp_path: Path, mosquitto: LocalMosquitto, keys: Keys, cloud: Cloud, signed: SignedManifest) -> None:
    sha = signed.manifest.sha256
    relay = TcpRelay(target_port=mosquitto.port)
    await relay.up()
    async with simulator(SecurityMode.LLS, name="m-1") as m1, simulator(SecurityMode.HLS_GMAC, name="m-2") as m2:
        config = write_config(tmp_path / "conc", broker=SimpleNamespace(port=relay.port), keys=keys,
                              chunk_size=CHUNK, meters=[dlms_entry("m-1", m1), dlms_entry("m-2", m2)])
        config.write_text(config.read_text().replace('password = "conc-1-pw"\n',
                                                     'password = "conc-1-pw"\nreconnect_max = 1\n'))
        cache = tmp_path / "conc" / "firmware"
        log = tmp_path / "conc" / "concentrator.log"
        proc = ManagedProcess(argv=[sys.executable, "-m", "gridwire.cli", "concentrator", "run", str(config),
                                    "--log-level", "INFO"], log=log)
        cloud.server.hold_after = HOLD_AFTER
        proc.start()
        try:
            await cloud.online()
            firmware = await cloud.send("m-1", "update_firmware", update(signed))
            await wait_for(lambda: len(chunks_on_disk(cache, sha)) == HOLD_AFTER, what="chunks on disk")
            proc.kill()
            await relay.down()  # the power cut took the link too
            on_disk = chunks_on_disk(cache, sha)
            before = len(cloud.requests)
            expired = await send_expiring(cloud, "m-2", "disconnect", ttl=timedelta(seconds=1))
            live = await send_expiring(cloud, "m-2", "get_clock", ttl=timedelta(minutes=5))
            await asyncio.sleep(1.5)  # the scenario: the first command's time to live passes while offline

            cloud.server.hold_after = None
            cloud.server.gate.set()
            proc.start()  # boots without a link: it must run, and keep trying the broker
            await wait_for(lambda: logged(log, "reconnect attempt 2 failed"), what="the offline boot to retry")
            assert proc.running and not expired.done() and not firmware.done()
            await relay.up()
            results = await asyncio.wait_for(asyncio.gather(firmware, expired, live), 60)
        finally:
            proc.stop()
            await relay.down()
        done, refused, answered = results
        assert done.status is CommandStatus.SUCCEEDED, done.error
        assert refused.status is CommandStatus.EXPIRED and refused.error.code == "EXPIRED"
        assert m2.model.output_state is True  # the expired disconnect never reached the meter
        assert answered.status is CommandStatus.SUCCEEDED and "time" in answered.result
        requested = {offset // CHUNK for _, offset in cloud.requests[before:]}
        assert requested.isdisjoint(on_disk) and requested | on_disk == set(range(CHUNKS))
        assert hashlib.sha256((cache / f"{sha}.bin").read_bytes()).hexdigest() == sha
        assert m1.model.firmware.version == "2.1.0" and m1.model.firmware.image() == IMAGE
        assert logged(log, "connected to the broker after") and logged(log, "since start")
