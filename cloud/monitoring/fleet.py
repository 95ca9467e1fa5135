"""The fleet at a glance, in a few GROUP BY queries however large it is: concentrators with
their last status and meter counts, devices by type, state and firmware version, devices per
owning organisation. Read by ``GET /v1/fleet``, ``gridwire fleet status`` and the console."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from cloud.monitoring.models import ConcentratorStateRow, DeviceConnectivityRow
from cloud.registry.enums import DeviceType
from cloud.registry.functions import FunctionGroup
from cloud.registry.models import Device, DeviceAuthorisation, Organisation


class _View(BaseModel):
    model_config = ConfigDict(populate_by_name=True, frozen=True)


class ConcentratorView(_View):
    """One concentrator: registry facts, its last accepted status and its meters."""

    concentrator_id: str = Field(alias="concentratorId")
    state: str | None = None  # ONLINE, OFFLINE, or None: never heard from
    last_seen: datetime | None = Field(default=None, alias="lastSeen")
    outbox_backlog: int | None = Field(default=None, alias="outboxBacklog")
    software_version: str | None = Field(default=None, alias="softwareVersion")
    reason: str | None = None
    meters: int = 0
    meters_online: int = Field(default=0, alias="metersOnline")
    meters_offline: int = Field(default=0, alias="metersOffline")


class FleetStatus(_View):
    """The whole fleet (or an organisation's part of it)."""

    concentrators: list[ConcentratorView]
    devices_by_type: dict[str, int] = Field(alias="devicesByType")
    devices_by_state: dict[str, int] = Field(alias="devicesByState")
    firmware_versions: dict[str, int] = Field(alias="firmwareVersions")
    devices_by_organisation: dict[str, int] = Field(alias="devicesByOrganisation")
    online: dict[str, int]


class FleetQueries:
    """Aggregates over the registry and monitoring tables (one engine, read only)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def status(self, *, concentrator_limit: int = 500) -> FleetStatus:
        """Counts over every device, and the first ``concentrator_limit`` concentrators by id."""
        async with self._sessions() as session:
            concentrators = (await session.execute(
                select(Device.identification, ConcentratorStateRow)
                .outerjoin(ConcentratorStateRow, ConcentratorStateRow.concentrator_id == Device.identification)
                .where(Device.device_type == DeviceType.CONCENTRATOR)
                .order_by(Device.identification).limit(concentrator_limit))).all()
            per_meter = (await session.execute(
                select(Device.concentrator_id, DeviceConnectivityRow.online, func.count())
                .outerjoin(DeviceConnectivityRow, DeviceConnectivityRow.device_id == Device.identification)
                .where(Device.concentrator_id.is_not(None))
                .group_by(Device.concentrator_id, DeviceConnectivityRow.online))).all()
            by_type = dict((await session.execute(select(Device.device_type, func.count())
                                                  .group_by(Device.device_type))).all())
            by_state = dict((await session.execute(select(Device.state, func.count())
                                                   .group_by(Device.state))).all())
            # Grouped by the column itself: PostgreSQL sees coalesce(col, $1) and coalesce(col, $2)
            # as different expressions and refuses the query.
            versions: dict[str, int] = {}
            for version, count in (await session.execute(
                    select(Device.firmware_version, func.count())
                    .where(Device.device_type != DeviceType.CONCENTRATOR)
                    .group_by(Device.firmware_version))).all():
                versions[version or "unknown"] = versions.get(version or "unknown", 0) + count
            owners = dict((await session.execute(
                select(Organisation.identification, func.count())
                .join(DeviceAuthorisation, and_(DeviceAuthorisation.organisation_id == Organisation.id,
                                                DeviceAuthorisation.function_group == FunctionGroup.OWNER))
                .group_by(Organisation.identification))).all())
            online = dict((await session.execute(select(DeviceConnectivityRow.online, func.count())
                                                 .group_by(DeviceConnectivityRow.online))).all())
        meters: dict[str, dict[bool | None, int]] = {}
        for cid, is_online, n in per_meter:
            meters.setdefault(cid, {})[is_online] = n
        views = []
        for cid, state in concentrators:
            counts = meters.get(cid, {})
            views.append(ConcentratorView(
                concentratorId=cid, state=state.state if state else None,
                lastSeen=state.status_at if state else None, outboxBacklog=state.outbox_backlog if state else None,
                softwareVersion=state.software_version if state else None, reason=state.reason if state else None,
                meters=sum(counts.values()), metersOnline=counts.get(True, 0), metersOffline=counts.get(False, 0)))
        return FleetStatus(concentrators=views,
                           devicesByType={_name(k): v for k, v in by_type.items()},
                           devicesByState={_name(k): v for k, v in by_state.items()},
                           firmwareVersions=versions, devicesByOrganisation=owners,
                           online={"online": online.get(True, 0), "offline": online.get(False, 0)})

    async def meters_of(self, concentrator_id: str, *, limit: int = 1000) -> list[dict[str, object]]:
        """The meters behind one concentrator with their communication health."""
        async with self._sessions() as session:
            rows = (await session.execute(
                select(Device, DeviceConnectivityRow.online)
                .outerjoin(DeviceConnectivityRow, DeviceConnectivityRow.device_id == Device.identification)
                .where(Device.concentrator_id == concentrator_id).order_by(Device.identification).limit(limit))).all()
        return [{"deviceId": d.identification, "protocol": _name(d.protocol), "model": d.model,
                 "firmwareVersion": d.firmware_version, "online": online, "lastSeen": d.last_seen,
                 "successes": d.comm_success_count, "failures": d.comm_failure_count,
                 "consecutiveFailures": d.consecutive_failures, "lastFailure": d.last_failure_reason}
                for d, online in rows]


def _name(value: object) -> str:
    return str(getattr(value, "value", value))
