"""Campaigns run through the real core and a real concentrator executor on real Mosquitto."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from cloud.core.models import CommandRow
from cloud.firmware.campaign_store import InvalidTransition
from cloud.firmware.schemas import CampaignStatus
from firmware_ota.campaign_logic import CampaignState, TargetState
from tests.cloud.firmware.harness import VERSION, campaign_rig, meter_ids
from tests.fixtures.mosquitto import MosquittoServer
from tests.fixtures.waiting import poll_until

S, T = CampaignState, TargetState


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'ota.db'}"


def settled(status) -> bool:
    return not status.campaign.active


async def test_campaign_updates_every_device_wave_by_wave(shared_mosquitto: MosquittoServer, db_url: str) -> None:
    async with campaign_rig(shared_mosquitto, db_url, meters=7, feeders=3) as rig:
        campaign = await rig.create(meter_ids(7), canary_size=1, max_groups_per_wave=2, start=True)
        await rig.runner(runner_id="r1")
        status = await rig.run_until(campaign, settled)
        assert status.campaign.state is S.FINISHED
        assert status.counts[T.SUCCEEDED] == 7 and status.failed == []
        assert [w.groups for w in status.waves] == [["F0"], ["F0", "F1"], ["F2"]]
        assert [w.counts[T.SUCCEEDED] for w in status.waves] == [1, 4, 2]
        for meter in meter_ids(7):
            assert (await rig.registry.get_device(meter)).firmware_version == VERSION
        assert await rig.commands_per_device() == {m: 1 for m in meter_ids(7)}
        assert rig.meters.calls == {m: 1 for m in meter_ids(7)}


async def test_error_threshold_stops_the_campaign_with_reasons(shared_mosquitto: MosquittoServer,
                                                              db_url: str) -> None:
    async with campaign_rig(shared_mosquitto, db_url, meters=6, feeders=2) as rig:
        # Feeder F0 = m000 (the canary), m002, m004 (wave 1); feeder F1 = m001, m003, m005 (wave 2).
        rig.meters.failures["m002"] = "TRANSFER_FAILED"
        campaign = await rig.create(meter_ids(6), canary_size=1, max_groups_per_wave=1, error_threshold=10,
                                    success_threshold=100, start=True)
        await rig.runner(runner_id="r1")
        status = await rig.run_until(campaign, settled)
        assert status.campaign.state is S.FAILED_THRESHOLD
        assert "wave 1" in (status.campaign.state_reason or "") and "error threshold" in status.campaign.state_reason
        assert [(f.device, f.failure_code) for f in status.failed] == [("m002", "TRANSFER_FAILED")]
        assert "TRANSFER_FAILED on m002" in (status.failed[0].failure_reason or "")
        # Wave 2 (feeder F1) never started.
        assert status.waves[2].counts[T.PENDING] == 3 and status.waves[2].started_at is None
        assert all(rig.meters.calls[m] == 0 for m in ("m001", "m003", "m005"))
        assert (await rig.registry.get_device("m002")).firmware_version == "2.0.0"
        assert (await rig.registry.get_device("m004")).firmware_version == VERSION


async def test_below_success_threshold_stops_after_the_wave(shared_mosquitto: MosquittoServer, db_url: str) -> None:
    async with campaign_rig(shared_mosquitto, db_url, meters=4, feeders=2) as rig:
        rig.meters.failures["m000"] = "MODEL_MISMATCH"
        campaign = await rig.create(meter_ids(4), canary_size=2, error_threshold=100, success_threshold=100,
                                    start=True)
        await rig.runner(runner_id="r1")
        status = await rig.run_until(campaign, settled)
        assert status.campaign.state is S.FAILED_THRESHOLD
        assert "below the success threshold" in (status.campaign.state_reason or "")
        assert status.counts[T.SUCCEEDED] == 1 and status.counts[T.FAILED] == 1 and status.counts[T.PENDING] == 2


async def test_pause_resume_and_cancel(shared_mosquitto: MosquittoServer, db_url: str) -> None:
    async with campaign_rig(shared_mosquitto, db_url, meters=6, feeders=3) as rig:
        campaign = await rig.create(meter_ids(6), canary_size=1, max_groups_per_wave=1)
        runner = await rig.runner(runner_id="r1")
        with pytest.raises(InvalidTransition, match="cannot pause"):
            await rig.service.control(campaign, "pause")
        await rig.service.control(campaign, "start")
        status = await rig.run_until(campaign, lambda s: s.counts[T.SUCCEEDED] >= 1)
        await rig.service.control(campaign, "pause")
        before = sum(rig.meters.calls.values())
        paused = await rig.run_until(campaign, lambda s: s.counts[T.IN_FLIGHT] == 0)
        for _ in range(5):
            await runner.tick()
        assert (await rig.service.status(campaign)).counts == paused.counts
        assert sum(rig.meters.calls.values()) == paused.counts[T.SUCCEEDED] >= before
        await rig.service.control(campaign, "resume")
        # A command in flight when the campaign is cancelled finishes and is recorded.
        rig.meters.gate = gate = asyncio.Event()
        await rig.run_until(campaign, lambda s: s.counts[T.IN_FLIGHT] >= 1)
        cancelled = await rig.service.control(campaign, "cancel")
        assert cancelled.state is S.CANCELLED
        gate.set()
        status = await rig.run_until(campaign, settled)
        assert status.campaign.state is S.CANCELLED
        assert status.counts[T.IN_FLIGHT] == 0 and status.counts[T.PENDING] == 0
        assert status.counts[T.CANCELLED] > 0
        assert status.counts[T.SUCCEEDED] == sum(rig.meters.calls.values())
        with pytest.raises(InvalidTransition):
            await rig.service.control(campaign, "resume")


async def test_silent_device_is_retried_then_failed(shared_mosquitto: MosquittoServer, db_url: str) -> None:
    async with campaign_rig(shared_mosquitto, db_url, meters=2, feeders=1) as rig:
        rig.meters.silent.add("m001")
        campaign = await rig.create(meter_ids(2), canary_size=0, error_threshold=100, success_threshold=0,
                                    max_attempts=2, retry_delay_seconds=0, command_ttl_seconds=10, start=True)
        runner = await rig.runner(runner_id="r1")

        async def expire_open_commands() -> None:
            # Instead of waiting out the time-to-live: the core's sweep then ends them TIMEOUT.
            async with rig.registry.engine.begin() as conn:
                await conn.execute(update(CommandRow).where(CommandRow.device == "m001", CommandRow.status.in_(
                    ["SENT", "DELIVERED", "QUEUED"])).values(expires_at=rig.store.clock() - timedelta(seconds=1)))

        async def tick() -> CampaignStatus:
            await expire_open_commands()
            await runner.tick()
            return await rig.service.status(campaign)

        status = await poll_until(tick, lambda s: not s.campaign.active, timeout=20, interval=0.05,
                                  what="the campaign to end")
        assert status.campaign.state is S.FINISHED
        [failed] = status.failed
        assert failed.device == "m001" and failed.failure_code == "TIMEOUT" and failed.attempts == 2
        assert "gave up after 2 attempts" in (failed.failure_reason or "")
        assert (await rig.commands_per_device())["m001"] == 2


async def test_in_flight_limits_per_campaign_and_per_feeder(shared_mosquitto: MosquittoServer, db_url: str) -> None:
    async with campaign_rig(shared_mosquitto, db_url, meters=12, feeders=3) as rig:
        rig.meters.gate = gate = asyncio.Event()
        # One wave over the three feeders (m000, m003, ... on F0; m001, m004, ... on F1; ...).
        campaign = await rig.create(meter_ids(12), canary_size=0, max_groups_per_wave=3, max_in_flight=2,
                                    max_in_flight_per_feeder=1, start=True)
        runner = await rig.runner(runner_id="r1")
        await rig.run_until(campaign, lambda s: s.counts[T.IN_FLIGHT] == 2)
        for _ in range(5):
            await runner.tick()
        flying = await rig.store.targets(campaign, state=T.IN_FLIGHT)
        assert len(flying) == 2 and len({t.feeder for t in flying}) == 2
        rig.meters.gate = None
        gate.set()
        status = await rig.run_until(campaign, settled)
        assert status.campaign.state is S.FINISHED and status.counts[T.SUCCEEDED] == 12
        assert await rig.commands_per_device() == {m: 1 for m in meter_ids(12)}
