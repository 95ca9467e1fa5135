"""Campaign service: create campaigns from a firmware and a target selection, control them,
and report their progress. Used by the web API and the tests; the runner does the rollout."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from broker.errors import Forbidden, Invalid
from cloud.core.access import permissions
from cloud.firmware.campaign_store import CampaignStore
from cloud.firmware.catalogue import FirmwareCatalogue
from cloud.firmware.models import CampaignRow, CampaignWaveRow
from cloud.firmware.schemas import (
    CampaignCreate,
    CampaignPublic,
    CampaignStatus,
    FailedTarget,
    TargetPublic,
    WavePublic,
)
from cloud.registry import DeviceFunction, GridPosition, LifecycleState, Registry
from cloud.registry.models import Device, DeviceAuthorisation, Organisation
from firmware_ota.campaign_logic import TargetState
from firmware_ota.campaign_plan import PlanTarget, group_of, plan_waves

log = logging.getLogger(__name__)

LOOKUP_CHUNK = 500
MAX_FAILED_LISTED = 1000


class TargetsRefused(Invalid):
    """The target selection cannot be used; ``problems`` names each device and why."""

    def __init__(self, message: str, problems: dict[str, str]) -> None:
        super().__init__(message)
        self.problems = problems

    def public_detail(self) -> dict[str, object]:
        return {"reason": str(self), "devices": self.problems}


class NotAuthorised(Forbidden):
    """The caller may not update some of the named devices; ``problems`` says why for each."""

    def __init__(self, message: str, problems: dict[str, str]) -> None:
        super().__init__(message)
        self.problems = problems

    def public_detail(self) -> dict[str, object]:
        return {"reason": str(self), "devices": self.problems}


@dataclass(frozen=True, slots=True)
class _DeviceInfo:
    identification: str
    model: str | None
    state: LifecycleState
    grid: GridPosition
    concentrator_id: str | None


class CampaignService:
    """What the API does with campaigns, on the registry database."""

    def __init__(self, *, store: CampaignStore, catalogue: FirmwareCatalogue, registry: Registry) -> None:
        self.store = store
        self.catalogue = catalogue
        self.registry = registry
        self._sessions = async_sessionmaker(store.engine, expire_on_commit=False)

    async def create(self, spec: CampaignCreate, *, organisation: str) -> CampaignPublic:
        """Resolve targets, check the caller may update each, plan the waves, store (and start)."""
        firmware = await self.catalogue.get(spec.firmware_id)  # FirmwareNotFound -> 404
        infos = await self._devices(spec.devices)
        problems = {d: "device is not registered" for d in spec.devices if d not in infos}
        for device in spec.devices:
            info = infos.get(device)
            if info is None:
                continue
            if info.state is LifecycleState.DECOMMISSIONED:
                problems[device] = "device is decommissioned"
            elif info.model not in firmware.device_models:
                problems[device] = (f"model {info.model!r} is not among the firmware's device models "
                                    f"{firmware.device_models}")
        if problems:
            raise TargetsRefused(f"{len(problems)} of the named devices cannot take firmware "
                                 f"{spec.firmware_id}", problems)
        chosen = dict(infos)
        if spec.all_devices_of is not None:
            for info in await self._devices_of(spec.all_devices_of, firmware.device_models):
                chosen.setdefault(info.identification, info)
        decisions = await permissions(self.registry, organisation, list(chosen), DeviceFunction.UPDATE_FIRMWARE)
        refused = {d: decisions[d].reason for d in spec.devices if not decisions[d].allowed}
        if refused:
            raise NotAuthorised(f"organisation {organisation!r} may not update {len(refused)} of the named devices",
                                refused)
        allowed = [info for d, info in sorted(chosen.items()) if decisions[d].allowed]
        if not allowed:
            raise TargetsRefused("no device to update: none of the selected devices fits the firmware and may "
                                 f"be updated by {organisation!r}", {})
        targets = [PlanTarget(device=i.identification, group=group_of(i.grid, spec.grouping), feeder=i.grid.feeder,
                              concentrator_id=i.concentrator_id) for i in allowed]
        waves = plan_waves(targets, max_groups_per_wave=spec.max_groups_per_wave, canary_size=spec.canary_size)
        settings = spec.model_dump(include={
            "max_groups_per_wave", "canary_size", "success_threshold", "error_threshold", "max_in_flight",
            "max_in_flight_per_feeder", "max_attempts", "retry_delay_seconds", "command_ttl_seconds"})
        settings["grouping"] = spec.grouping.value
        campaign_id = await self.store.create(name=spec.name, organisation=organisation, firmware_id=spec.firmware_id,
                                              created_by=organisation, settings=settings, waves=waves)
        if spec.start:
            await self.store.control(campaign_id, "start")
        return await self.public(campaign_id)

    async def control(self, campaign_id: str, action: str) -> CampaignPublic:
        await self.store.control(campaign_id, action)
        return await self.public(campaign_id)

    async def public(self, campaign_id: str) -> CampaignPublic:
        return await self._public(await self.store.get(campaign_id))

    async def list(self, *, organisation: str | None = None) -> list[CampaignPublic]:
        return [await self._public(row) for row in await self.store.list(organisation=organisation)]

    async def status(self, campaign_id: str) -> CampaignStatus:
        """Counts per state overall and per wave, and the failed devices with their reasons."""
        snapshot = await self.store.snapshot(campaign_id, failed_limit=MAX_FAILED_LISTED)
        campaign = await self._public(snapshot.campaign, snapshot.waves, snapshot.version)
        total: Counter[TargetState] = Counter()
        wave_views = []
        for wave, count in zip(snapshot.waves, snapshot.counts, strict=True):
            per = {TargetState.PENDING: count.pending, TargetState.IN_FLIGHT: count.in_flight,
                   TargetState.SUCCEEDED: count.succeeded, TargetState.FAILED: count.failed,
                   TargetState.CANCELLED: count.cancelled}
            total.update(per)
            wave_views.append(WavePublic(index=wave.index, canary=wave.canary, groups=list(wave.groups),
                                         started_at=wave.started_at, counts=per))
        failed = [FailedTarget(device=t.device, wave=t.wave, group=t.group_key, attempts=t.attempts,
                               failure_code=t.failure_code, failure_reason=t.failure_reason,
                               command_id=t.command_id, finished_at=t.finished_at)
                  for t in snapshot.failed]
        return CampaignStatus(campaign=campaign, counts={s: total.get(s, 0) for s in TargetState}, waves=wave_views,
                              failed=failed)

    async def targets(self, campaign_id: str, *, state: TargetState | None, page: int,
                      page_size: int) -> list[TargetPublic]:
        """One page (from 0) of the campaign's devices, by wave then device, optionally of one state."""
        await self.store.get(campaign_id)  # unknown campaign: the store's error
        rows = await self.store.targets(campaign_id, state=state, limit=page_size, offset=page * page_size)
        return [TargetPublic(device=t.device, wave=t.wave, group=t.group_key, state=TargetState(t.state),
                             attempts=t.attempts, command_id=t.command_id, failure_code=t.failure_code,
                             failure_reason=t.failure_reason, reported_version=t.reported_version,
                             issued_at=t.issued_at, finished_at=t.finished_at, extra=t.result)
                for t in rows]

    async def _public(self, row: CampaignRow, waves: Sequence[CampaignWaveRow] | None = None,
                      version: str | None = None) -> CampaignPublic:
        if version is None:
            version = (await self.catalogue.get(row.firmware_id)).version  # FirmwareNotFound if it is gone
        if waves is None:
            waves = await self.store.waves(row.id)
        return CampaignPublic(
            id=row.id, name=row.name, organisation=row.organisation, firmware_id=row.firmware_id,
            version=version, state=row.state, state_reason=row.state_reason, active=row.active,
            grouping=row.grouping, max_groups_per_wave=row.max_groups_per_wave, canary_size=row.canary_size,
            success_threshold=row.success_threshold, error_threshold=row.error_threshold,
            max_in_flight=row.max_in_flight, max_in_flight_per_feeder=row.max_in_flight_per_feeder,
            max_attempts=row.max_attempts, retry_delay_seconds=row.retry_delay_seconds,
            command_ttl_seconds=row.command_ttl_seconds, current_wave=row.current_wave, wave_count=len(waves),
            target_count=sum(w.target_count for w in waves), created_by=row.created_by, created_at=row.created_at,
            started_at=row.started_at, finished_at=row.finished_at)

    async def _devices(self, identifications: Sequence[str]) -> dict[str, _DeviceInfo]:
        found: dict[str, _DeviceInfo] = {}
        async with self._sessions() as session:
            for start in range(0, len(identifications), LOOKUP_CHUNK):
                chunk = list(identifications[start:start + LOOKUP_CHUNK])
                rows = await session.scalars(select(Device).where(Device.identification.in_(chunk)))
                found.update((r.identification, _info(r)) for r in rows)
        return found

    async def _devices_of(self, organisation: str, models: Sequence[str]) -> list[_DeviceInfo]:
        held = (select(DeviceAuthorisation.device_id).join(Organisation)
                .where(Organisation.identification == organisation))
        query = select(Device).where(Device.id.in_(held), Device.model.in_(list(models)),
                                     Device.state != LifecycleState.DECOMMISSIONED)
        async with self._sessions() as session:
            return [_info(r) for r in (await session.scalars(query)).all()]


def _info(row: Device) -> _DeviceInfo:
    return _DeviceInfo(identification=row.identification, model=row.model, state=LifecycleState(row.state),
                       grid=GridPosition(feeder=row.feeder, transformer=row.transformer, substation=row.substation),
                       concentrator_id=row.concentrator_id)
