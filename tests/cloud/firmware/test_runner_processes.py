"""Campaign runners as real OS processes: two at once on PostgreSQL issue each target exactly
once; one SIGKILLed mid-campaign and restarted loses and duplicates nothing; a target claimed
by a runner that died before publishing is sent once."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

from sqlalchemy import select

from cloud.firmware.models import CampaignTargetRow
from firmware_ota.campaign_logic import CampaignState, TargetState
from tests.cloud.firmware.harness import (
    VERSION,
    campaign_rig,
    meter_ids,
    runner_process,
    wait_status,
)
from tests.fixtures.mosquitto import MosquittoServer

S, T = CampaignState, TargetState


async def _issuers(rig) -> Counter[str]:
    async with rig.registry.engine.connect() as conn:
        rows = (await conn.execute(select(CampaignTargetRow.issued_by))).scalars().all()
    return Counter(rows)


async def test_two_runner_processes_issue_each_target_once(tmp_path: Path, shared_mosquitto: MosquittoServer,
                                                           postgres_url: str) -> None:
    count = 40
    async with campaign_rig(shared_mosquitto, postgres_url, meters=count, feeders=4) as rig:
        campaign = await rig.create(meter_ids(count), canary_size=2, max_groups_per_wave=2, max_in_flight=6,
                                    max_in_flight_per_feeder=3, start=True)
        procs = [runner_process(tmp_path, f"runner-{n}", broker=shared_mosquitto, db_url=postgres_url, lease=0.5)
                 for n in (1, 2)]
        for proc in procs:
            proc.start()
        try:
            status = await wait_status(rig, campaign, lambda s: not s.campaign.active, timeout=60)
        finally:
            for proc in procs:
                proc.stop()
        assert status.campaign.state is S.FINISHED, status.campaign.state_reason
        assert status.counts[T.SUCCEEDED] == count
        assert rig.meters.calls == {m: 1 for m in meter_ids(count)}
        assert await rig.commands_per_device() == {m: 1 for m in meter_ids(count)}
        issuers = await _issuers(rig)
        assert set(issuers) <= {"runner-1", "runner-2"} and sum(issuers.values()) == count
        print(f"targets issued per runner: {dict(issuers)}")
        assert len(issuers) == 2, f"only one runner did any work: {issuers}"


async def test_runner_sigkilled_mid_campaign_and_restarted(tmp_path: Path, shared_mosquitto: MosquittoServer) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'kill.db'}"
    count = 10
    async with campaign_rig(shared_mosquitto, url, meters=count, feeders=1) as rig:
        # m004 and m005 (the third pair issued) hang until released.
        rig.meters.gate = gate = asyncio.Event()
        rig.meters.held = {"m004", "m005"}
        campaign = await rig.create(meter_ids(count), canary_size=0, max_in_flight=2, start=True)
        proc = runner_process(tmp_path, "runner-k", broker=shared_mosquitto, db_url=url, lease=1.0)
        proc.start()
        try:
            before = await wait_status(rig, campaign, lambda s: s.counts[T.SUCCEEDED] == 4
                                       and s.counts[T.IN_FLIGHT] == 2 and rig.meters.calls["m005"] == 1)
            proc.kill()
            # The in-flight updates finish while no runner is alive; the core records them.
            gate.set()
            await wait_status(rig, campaign, lambda s: rig.meters.calls["m004"] == rig.meters.calls["m005"] == 1)
            proc.start()
            status = await wait_status(rig, campaign, lambda s: not s.campaign.active)
        finally:
            proc.stop()
        assert before.campaign.state is S.RUNNING
        assert status.campaign.state is S.FINISHED and status.counts[T.SUCCEEDED] == count
        assert rig.meters.calls == {m: 1 for m in meter_ids(count)}
        assert await rig.commands_per_device() == {m: 1 for m in meter_ids(count)}
        for meter in meter_ids(count):
            assert (await rig.registry.get_device(meter)).firmware_version == VERSION


async def test_target_claimed_by_a_runner_that_died_before_publishing(shared_mosquitto: MosquittoServer,
                                                                     tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'claimed.db'}"
    async with campaign_rig(shared_mosquitto, url, meters=2, feeders=1) as rig:
        campaign = await rig.create(meter_ids(2), canary_size=0, start=True)
        [first, *_] = await rig.store.candidates(campaign, up_to_wave=0, per_feeder=1, limit=1)
        # What a runner killed between its claim and its publish leaves behind.
        await rig.store.claim_target(first.target_id, campaign, command_id="7d6f2c1e-1111-4222-8333-444455556666",
                                     runner="dead-runner")
        runner = await rig.runner(runner_id="r2", republish_after=0.3)
        status = await rig.run_until(campaign, lambda s: not s.campaign.active)
        assert status.campaign.state is S.FINISHED and status.counts[T.SUCCEEDED] == 2
        assert rig.meters.calls == {"m000": 1, "m001": 1}
        assert await rig.commands_per_device() == {"m000": 1, "m001": 1}
        assert (await rig.store.targets(campaign))[0].command_id == "7d6f2c1e-1111-4222-8333-444455556666"
        assert runner.published >= 2  # the re-send of the orphaned claim, and m001
