"""UPDATE_FIRMWARE through the cloud's core to a real concentrator and DLMS meter: what a campaign
runner relies on (authorised, routed, retried after a transient transfer failure, answered)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from broker import topics
from broker.schemas.command import GenericCommand
from broker.schemas.firmware import SignedManifest
from broker.session import publish_properties
from edge.concentrator import Concentrator
from edge.config import load_config
from edge.dlms import SecurityMode
from gridwire.services import LocalMosquitto
from tests.cloud.core.harness import METER, ORG_A, Inbox, json_of, platform, session_for
from tests.edge.ota.conftest import Cloud, Keys, dlms_entry, simulator, update, write_config


async def test_core_routes_update_firmware_retries_a_cut_transfer_and_reports_success(
        tmp_path: Path, mosquitto: LocalMosquitto, keys: Keys, cloud: Cloud, signed: SignedManifest) -> None:
    async with simulator(SecurityMode.HLS_GMAC, name=METER) as sim, \
            platform(mosquitto, f"sqlite+aiosqlite:///{tmp_path / 'platform.db'}", concentrator=False) as stack:
        config = write_config(tmp_path / "conc", broker=mosquitto, keys=keys, meters=[dlms_entry(METER, sim)])
        conc = Concentrator.from_config(load_config(config))
        stop = asyncio.Event()
        task = asyncio.create_task(conc.run(stop), name="concentrator")
        inbox = Inbox()
        try:
            await cloud.online()
            sim.drop_after_frames = 60  # the first attempt's association is cut mid-blocks
            now = datetime.now(UTC)
            command = GenericCommand(deviceId=METER, name="update_firmware", parameters=update(signed),
                                     issuedAt=now, expiresAt=now + timedelta(minutes=30))
            async with session_for(mosquitto, "gridwire-cloud") as campaign:
                await campaign.subscribe(topics.core_topic("response", ORG_A), inbox.handler)
                await campaign.publish(topics.core_topic("request", ORG_A), command.to_wire(),
                                       properties=publish_properties(correlation_data=command.correlation_data(),
                                                                     user_properties={"correlationId": "wave-1"}))
                answer = json_of(await inbox.wait_for(lambda m: True, timeout=60))
        finally:
            stop.set()
            await asyncio.wait_for(task, 20)
        assert answer["status"] == "SUCCEEDED", answer
        assert answer["result"] == {"firmwareVersion": "2.1.0", "imageSha256": signed.manifest.sha256,
                                    "transferred": True}
        record = await stack.store.get(str(command.command_id))
        assert record is not None and record.status == "SUCCEEDED" and record.attempts == 2
        assert sim.model.firmware.version == "2.1.0"
        assert sim.model.firmware.blocks_received == sim.model.firmware.block_count  # the retry resumed
