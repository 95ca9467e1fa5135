"""The campaign runner: advances active campaigns through the core's command machinery.

Each round, for every active campaign whose lease it holds, the runner
1. follows the commands in flight (read from the core's ``command`` table): a final one is
   judged (:func:`firmware_ota.campaign_logic.judge`) and recorded once; a success also sets
   the device's firmware version in the registry; a command the core never stored (the runner
   died between claiming and publishing, or the broker lost it) is published again with the
   same command id, which the core de-duplicates;
2. asks :func:`firmware_ota.campaign_logic.decide` what to do next, stores the decision, and
   issues the chosen targets: claim (compare-and-set, new command id) first, then publish
   ``update_firmware`` on ``core/request/<org>``, so a crash in between loses nothing.

Stateless apart from the database: run as many as you like (``gridwire cloud campaigns``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Awaitable
from datetime import datetime, timedelta
from typing import Protocol

from paho.mqtt.properties import Properties

from broker import topics
from broker.schemas.command import GenericCommand
from broker.schemas.firmware import SignedManifest
from broker.session import MqttError, publish_properties
from cloud.core.consumer import CORRELATION, DOMAIN
from cloud.firmware.campaign_store import CampaignStore, InFlight
from cloud.firmware.catalogue import FirmwareCatalogue
from cloud.firmware.models import CampaignRow
from cloud.registry import DeviceNotFound, DeviceUpdate, InvalidChange, Registry
from cloud.registry.errors import DeviceDecommissioned
from firmware_ota.campaign_logic import (
    CampaignState,
    Outcome,
    Policy,
    TargetState,
    decide,
    judge,
)

log = logging.getLogger(__name__)

COMMAND_NAME = "update_firmware"
CAMPAIGN_DOMAIN = "firmware"


class Publisher(Protocol):
    """What the runner needs from an MQTT session (:class:`broker.session.MqttSession` fits)."""

    def publish(self, topic: str, payload: bytes | str, *, qos: int = 1, retain: bool = False,
                properties: Properties | None = None) -> Awaitable[None]: ...


def default_runner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class CampaignRunner:
    """Advances campaigns: ``await tick()`` once, or ``await run(stop)`` until ``stop`` is set."""

    def __init__(self, *, store: CampaignStore, catalogue: FirmwareCatalogue, registry: Registry,
                 publisher: Publisher, runner_id: str | None = None, lease: timedelta = timedelta(seconds=30),
                 republish_after: timedelta = timedelta(seconds=30), poll_interval: float = 1.0) -> None:
        self.store = store
        self.catalogue = catalogue
        self.registry = registry
        self.publisher = publisher
        self.runner_id = runner_id or default_runner_id()
        self.lease = lease
        self.republish_after = republish_after
        self.poll_interval = poll_interval
        self._manifests: dict[str, SignedManifest] = {}
        # Commands this runner published (first sends and re-sends): for tests and metrics.
        self.published = 0

    def now(self) -> datetime:
        return self.store.clock()

    async def tick(self) -> None:
        """One round over every active campaign this runner can lease."""
        for campaign_id in await self.store.active_ids():
            if not await self.store.take_lease(campaign_id, runner=self.runner_id, lease=self.lease):
                continue
            try:
                await self._advance(campaign_id)
            except MqttError:
                log.warning("campaign %s: broker unavailable; next round tries again", campaign_id)
            finally:
                # The lease guards one round: the next round goes to whichever runner comes first.
                await self.store.release_lease(campaign_id, runner=self.runner_id)

    async def run(self, stop: asyncio.Event) -> None:
        log.info("campaign runner %s running", self.runner_id)
        while not stop.is_set():
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                # A database hiccup must not end the runner; the next round tries again.
                log.exception("campaign runner round failed")
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.poll_interval)
            except TimeoutError:
                pass
        log.info("campaign runner %s stopped", self.runner_id)

    async def _advance(self, campaign_id: str) -> None:
        campaign = await self.store.get(campaign_id)
        signed = await self._manifest(campaign.firmware_id)
        await self._follow(campaign, signed)
        was = CampaignState(campaign.state)
        waves = await self.store.wave_counts(campaign_id)
        policy = Policy(success_threshold=campaign.success_threshold, error_threshold=campaign.error_threshold,
                        max_in_flight=campaign.max_in_flight,
                        max_in_flight_per_feeder=campaign.max_in_flight_per_feeder)
        candidates = []
        if was is CampaignState.RUNNING:
            last_wave = max((w.index for w in waves), default=0)
            candidates = await self.store.candidates(campaign_id, up_to_wave=last_wave,
                                                     per_feeder=campaign.max_in_flight_per_feeder,
                                                     limit=campaign.max_in_flight * 4)
        decision = decide(state=was, reason=campaign.state_reason, current_wave=campaign.current_wave, policy=policy,
                          waves=waves, candidates=candidates,
                          in_flight_per_feeder=await self.store.per_feeder_in_flight(campaign_id))
        if not await self.store.apply(campaign_id, was=was, decision=decision, runner=self.runner_id):
            return  # an operator changed the state, or the lease moved: look again next round
        for target_id in decision.issue:
            command_id = str(uuid.uuid4())
            claimed = await self.store.claim_target(target_id, campaign_id, command_id=command_id,
                                                    runner=self.runner_id)
            if claimed is None:
                continue
            assert claimed.issued_at is not None
            await self._publish(campaign, signed, device=claimed.device, command_id=command_id,
                                issued_at=claimed.issued_at)

    async def _follow(self, campaign: CampaignRow, signed: SignedManifest) -> None:
        flights = await self.store.in_flight(campaign.id)
        states = await self.store.commands([f.command_id for f in flights])
        now = self.now()
        ttl = timedelta(seconds=campaign.command_ttl_seconds)
        for flight in flights:
            state = states.get(flight.command_id)
            if state is None:
                if now - flight.issued_at >= ttl + self.republish_after:
                    # The core never took it within its whole life: count it as expired.
                    await self._record(campaign, flight, judge(
                        status="EXPIRED", result=None, error={"code": "EXPIRED", "message":
                                                              "the core never received the command"},
                        attempts=flight.attempts, max_attempts=campaign.max_attempts,
                        expected_version=signed.manifest.version))
                elif now - flight.issued_at >= self.republish_after:
                    log.warning("campaign %s: command %s for %s not seen by the core; publishing it again",
                                campaign.id, flight.command_id, flight.device)
                    await self._publish(campaign, signed, device=flight.device, command_id=flight.command_id,
                                        issued_at=flight.issued_at)
                continue
            if state.status not in ("SUCCEEDED", "FAILED", "TIMEOUT", "EXPIRED"):
                continue
            outcome = judge(status=state.status, result=state.result, error=state.error, attempts=flight.attempts,
                            max_attempts=campaign.max_attempts, expected_version=signed.manifest.version)
            await self._record(campaign, flight, outcome)

    async def _record(self, campaign: CampaignRow, flight: InFlight, outcome: Outcome) -> None:
        if outcome.state is TargetState.SUCCEEDED and outcome.reported_version:
            # Before the target is marked: a crash in between repeats this harmless update.
            try:
                await self.registry.update_device(flight.device,
                                                  DeviceUpdate(firmware_version=outcome.reported_version))
            except (DeviceNotFound, DeviceDecommissioned, InvalidChange) as exc:
                log.warning("campaign %s: %s updated but its registry entry could not be: %s",
                            campaign.id, flight.device, exc)
        if await self.store.record(flight, outcome, retry_delay=timedelta(seconds=campaign.retry_delay_seconds)):
            if outcome.state is TargetState.SUCCEEDED:
                log.info("campaign %s: %s now runs %s", campaign.id, flight.device, outcome.reported_version)
            elif outcome.retry:
                log.info("campaign %s: %s attempt %d ended %s; will retry", campaign.id, flight.device,
                         flight.attempts, outcome.code)
            else:
                log.warning("campaign %s: %s failed: %s %s", campaign.id, flight.device, outcome.code,
                            outcome.reason)

    async def _publish(self, campaign: CampaignRow, signed: SignedManifest, *, device: str, command_id: str,
                       issued_at: datetime) -> None:
        expires = issued_at + timedelta(seconds=campaign.command_ttl_seconds)
        command = GenericCommand(commandId=uuid.UUID(command_id), deviceId=device, name=COMMAND_NAME,
                                 parameters={"signedManifest": signed.model_dump(mode="json", by_alias=True)},
                                 organisation=campaign.organisation, priority=6, issuedAt=issued_at,
                                 expiresAt=expires)
        remaining = max(1, int((expires - self.now()).total_seconds()))
        props = publish_properties(correlation_data=command.correlation_data(), message_expiry=remaining,
                                   user_properties={CORRELATION: campaign.id, DOMAIN: CAMPAIGN_DOMAIN,
                                                    "operation": COMMAND_NAME, "campaignId": campaign.id})
        await self.publisher.publish(topics.core_topic("request", campaign.organisation), command.to_wire(), qos=1,
                                     properties=props)
        self.published += 1
        log.debug("campaign %s: update_firmware %s sent for %s", campaign.id, command_id, device)

    async def _manifest(self, firmware_id: str) -> SignedManifest:
        found = self._manifests.get(firmware_id)
        if found is None:
            found = self._manifests[firmware_id] = await self.catalogue.signed(firmware_id)
        return found

