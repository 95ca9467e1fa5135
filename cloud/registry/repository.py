"""The device registry: devices, organisations and who may do what with which device.

An async facade over SQLAlchemy; every method is one short transaction, so any number of
stateless service processes can share one database. Counters are bumped with SQL
``UPDATE ... SET n = n + 1`` so concurrent consumers never lose an increment.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime
from types import TracebackType
from typing import Any

from sqlalchemy import Select, and_, bindparam, delete, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from broker.sealing import KeyRing
from cloud.registry import errors, webhook_secrets
from cloud.registry.db import create_engine
from cloud.registry.enums import DeviceType, LifecycleState, can_update_state
from cloud.registry.functions import Decision, DeviceFunction, FunctionGroup, authorise, groups_allowing
from cloud.registry.models import Device, DeviceAuthorisation, Organisation, utcnow
from cloud.registry.schemas import (
    AuthorisationPublic,
    DeviceCreate,
    DevicePublic,
    DeviceUpdate,
    OrganisationCreate,
    OrganisationPublic,
    OrganisationUpdate,
    Route,
    reached_through,
)

log = logging.getLogger(__name__)

# The groups whose holders may read a device's stored meter data (see cloud.registry.functions).
METER_DATA_GROUPS: frozenset[FunctionGroup] = groups_allowing(DeviceFunction.READ_METER_DATA)

# The reads every web request makes (its caller, a device, a permission), built once and run on
# an autocommit connection: building a statement, an ORM session and its BEGIN/ROLLBACK round
# trips cost more than the query.
_ORGANISATION = select(*Organisation.__table__.columns).where(Organisation.identification == bindparam("org"))
_DEVICE = select(*Device.__table__.columns).where(Device.identification == bindparam("device"))
# A row per group held (one with NULL if none); no row if the organisation or device is unknown.
_HELD = (select(Organisation.enabled, Device.state, DeviceAuthorisation.function_group)
         .select_from(Organisation).join(Device, true())
         .outerjoin(DeviceAuthorisation, and_(DeviceAuthorisation.device_id == Device.id,
                                              DeviceAuthorisation.organisation_id == Organisation.id))
         .where(Organisation.identification == bindparam("org"), Device.identification == bindparam("device")))
# The same rows with the device's columns: a permission and the device it is on, in one query.
_HELD_DEVICE = (select(Organisation.enabled.label("organisation_enabled"), DeviceAuthorisation.function_group,
                       *Device.__table__.columns)
                .select_from(Organisation).join(Device, true())
                .outerjoin(DeviceAuthorisation, and_(DeviceAuthorisation.device_id == Device.id,
                                                     DeviceAuthorisation.organisation_id == Organisation.id))
                .where(Organisation.identification == bindparam("org"), Device.identification == bindparam("device")))
# Of the meters asked for, those an organisation may read (see meters_for_org).
_READABLE = (select(Device.identification).join(DeviceAuthorisation).join(Organisation)
             .where(Organisation.identification == bindparam("org"), Organisation.enabled.is_(True),
                    DeviceAuthorisation.function_group.in_(METER_DATA_GROUPS),
                    Device.identification.in_(bindparam("meters", expanding=True))).distinct())


class Registry:
    """Devices, organisations and authorisations, on SQLite or PostgreSQL.

    Give either an ``engine`` (shared with the caller, who disposes it) or a ``url`` (the
    registry makes its own engine and disposes it in :meth:`close`). The schema must already
    be migrated (:func:`cloud.migrations.migrate`). ``sealing`` is the platform's sealing key
    ring: webhook secrets are written sealed with it (:mod:`cloud.registry.webhook_secrets`),
    and refused without one.
    """

    def __init__(self, *, engine: AsyncEngine | None = None, url: str | None = None,
                 clock: Callable[[], datetime] = utcnow, sealing: KeyRing | None = None) -> None:
        if (engine is None) == (url is None):
            raise ValueError("give exactly one of engine and url")
        self._owns_engine = engine is None
        self.engine: AsyncEngine = engine if engine is not None else create_engine(url)  # type: ignore[arg-type]
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # One statement per read: no BEGIN and ROLLBACK round trips around it.
        self._auto = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._clock = clock
        self._sealing = sealing

    async def close(self) -> None:
        """Release the database connections, if the registry made the engine."""
        if self._owns_engine:
            await self.engine.dispose()

    async def __aenter__(self) -> Registry:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    # --- devices ----------------------------------------------------------------------------

    async def create_device(self, spec: DeviceCreate, *, owner: str | None = None) -> DevicePublic:
        """Register a device; if ``owner`` is given that organisation gets OWNER on it, atomically."""
        now = self._clock()
        async with self._sessions.begin() as session:
            # Look the owner up before adding the row, so no autoflush runs outside the try below.
            org = await self._org_row(session, owner) if owner is not None else None
            row = Device(identification=spec.identification, device_type=spec.device_type,
                         protocol=spec.protocol, state=spec.state, created_at=now, updated_at=now,
                         comm_success_count=0, comm_failure_count=0, consecutive_failures=0)
            _apply(row, spec.model_dump(exclude={"identification", "device_type", "protocol", "state"}))
            _payload_format_on_concentrators(row)
            session.add(row)
            if org is not None:
                session.add(DeviceAuthorisation(device=row, organisation=org, function_group=FunctionGroup.OWNER,
                                                created_at=now))
            try:
                await session.flush()
            except IntegrityError as exc:
                raise errors.DeviceExists(spec.identification) from exc
            log.info("device %s registered (%s, %s)%s", spec.identification, spec.device_type, spec.protocol,
                     f" owned by {owner}" if owner else "")
            return DevicePublic.of(row)

    async def update_device(self, device: str, change: DeviceUpdate) -> DevicePublic:
        """Change the fields given in ``change``; a decommissioned device cannot be changed."""
        async with self._sessions.begin() as session:
            row = await self._device_row(session, device, for_update=True)
            if row.state is LifecycleState.DECOMMISSIONED:
                raise errors.DeviceDecommissioned(device)
            if change.state is not None and not can_update_state(row.state, change.state):
                raise errors.InvalidStateChange(device, row.state, change.state)
            if change.concentrator_id is not None and change.concentrator_id == device:
                raise errors.InvalidChange(f"device {device!r} cannot sit behind itself")
            _apply(row, change.model_dump(exclude_unset=True))
            _payload_format_on_concentrators(row)
            row.updated_at = self._clock()
            await session.flush()
            return DevicePublic.of(row)

    async def get_device(self, device: str) -> DevicePublic:
        """The device named ``device``; DeviceNotFound if there is none."""
        async with self._auto.connect() as conn:
            row = (await conn.execute(_DEVICE, {"device": device})).first()
        if row is None:
            raise errors.DeviceNotFound(device)
        return DevicePublic.of(row)

    async def list_devices(self, *, organisation: str | None = None, device_type: str | None = None,
                           concentrator_id: str | None = None, feeder: str | None = None,
                           state: LifecycleState | None = None, limit: int = 1000,
                           offset: int = 0) -> list[DevicePublic]:
        """Devices matching every filter given, ordered by identification.

        ``organisation`` keeps the devices that organisation holds any function group on.
        """
        query: Select[Any] = select(Device)
        if organisation is not None:
            held = (select(DeviceAuthorisation.device_id).join(Organisation)
                    .where(Organisation.identification == organisation))
            query = query.where(Device.id.in_(held))
        if device_type is not None:
            query = query.where(Device.device_type == device_type)
        if concentrator_id is not None:
            query = query.where(Device.concentrator_id == concentrator_id)
        if feeder is not None:
            query = query.where(Device.feeder == feeder)
        if state is not None:
            query = query.where(Device.state == state)
        query = query.order_by(Device.identification).limit(limit).offset(offset)
        async with self._sessions() as session:
            return [DevicePublic.of(row) for row in (await session.scalars(query)).all()]

    async def decommission(self, device: str) -> DevicePublic:
        """Retire a device for good; doing it twice is harmless. Authorisations are kept for history."""
        async with self._sessions.begin() as session:
            row = await self._device_row(session, device, for_update=True)
            if row.state is not LifecycleState.DECOMMISSIONED:
                row.state = LifecycleState.DECOMMISSIONED
                row.updated_at = self._clock()
                log.info("device %s decommissioned", device)
            return DevicePublic.of(row)

    async def route(self, device: str) -> Route:
        """How the core reaches ``device``; DeviceDecommissioned if it must not be reached at all."""
        async with self._sessions() as session:
            row = await self._device_row(session, device)
        if row.state is LifecycleState.DECOMMISSIONED:
            raise errors.DeviceDecommissioned(device)
        return Route(device_id=row.identification,
                     concentrator_id=reached_through(row.identification, row.device_type, row.concentrator_id),
                     protocol=row.protocol, protocol_version=row.protocol_version)

    async def record_communication(self, device: str, *, success: bool, at: datetime | None = None,
                                   reason: str | None = None) -> None:
        """Count one communication attempt with ``device``.

        A success sets last seen, clears the failure streak and makes a registered or
        installed device ACTIVE (it evidently is); a failure bumps both failure counters.
        """
        when = at or self._clock()
        if success:
            values: dict[str, Any] = {"comm_success_count": Device.comm_success_count + 1,
                                      "consecutive_failures": 0, "last_seen": when}
        else:
            values = {"comm_failure_count": Device.comm_failure_count + 1,
                      "consecutive_failures": Device.consecutive_failures + 1,
                      "last_failure_at": when, "last_failure_reason": (reason or "")[:512] or None}
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(Device).where(Device.identification == device).values(**values)
                .execution_options(synchronize_session=False))
            if result.rowcount == 0:  # type: ignore[attr-defined]
                raise errors.DeviceNotFound(device)
            if success:
                await session.execute(
                    update(Device).where(Device.identification == device,
                                         Device.state.in_([LifecycleState.REGISTERED, LifecycleState.INSTALLED]))
                    .values(state=LifecycleState.ACTIVE, updated_at=when)
                    .execution_options(synchronize_session=False))

    # --- organisations ----------------------------------------------------------------------

    async def add_organisation(self, spec: OrganisationCreate) -> OrganisationPublic:
        """Add an organisation; OrganisationExists if the identification is taken, NoSealingKey for a
        webhook secret with no sealing key."""
        now = self._clock()
        secret = (webhook_secrets.seal(self._sealing, spec.identification, spec.webhook_secret.get_secret_value())
                  if spec.webhook_secret else None)
        row = Organisation(identification=spec.identification, name=spec.name, enabled=spec.enabled,
                           role=spec.role, created_at=now, updated_at=now,
                           webhook_url=str(spec.webhook_url) if spec.webhook_url else None, webhook_secret=secret)
        async with self._sessions.begin() as session:
            session.add(row)
            try:
                await session.flush()
            except IntegrityError as exc:
                raise errors.OrganisationExists(spec.identification) from exc
            log.info("organisation %s added (%s)", spec.identification, spec.role)
            return OrganisationPublic.of(row)

    async def update_organisation(self, organisation: str, change: OrganisationUpdate) -> OrganisationPublic:
        """Change the fields given in ``change`` (a webhook secret sealed: NoSealingKey without a key)."""
        # Sealed before the transaction: a refusal changes nothing.
        secret = (webhook_secrets.seal(self._sealing, organisation, change.webhook_secret.get_secret_value())
                  if change.webhook_secret else None)
        async with self._sessions.begin() as session:
            row = await self._org_row(session, organisation)
            for name, value in change.model_dump(exclude_unset=True).items():
                if name == "webhook_url":
                    value = str(value) if value is not None else None
                elif name == "webhook_secret":
                    value = secret
                elif value is None:
                    continue  # name, enabled and role cannot be cleared
                setattr(row, name, value)
            row.updated_at = self._clock()
            await session.flush()
            return OrganisationPublic.of(row)

    async def get_organisation(self, organisation: str) -> OrganisationPublic:
        """The organisation named ``organisation``; OrganisationNotFound if there is none."""
        async with self._auto.connect() as conn:
            row = (await conn.execute(_ORGANISATION, {"org": organisation})).first()
        if row is None:
            raise errors.OrganisationNotFound(organisation)
        return OrganisationPublic.of(row)

    async def list_organisations(self) -> list[OrganisationPublic]:
        """Every organisation, ordered by identification."""
        async with self._sessions() as session:
            rows = await session.scalars(select(Organisation).order_by(Organisation.identification))
            return [OrganisationPublic.of(row) for row in rows.all()]

    # --- authorisations ---------------------------------------------------------------------

    async def grant(self, device: str, organisation: str, group: FunctionGroup) -> AuthorisationPublic:
        """Give ``organisation`` the function group ``group`` on ``device``."""
        async with self._sessions.begin() as session:
            dev = await self._device_row(session, device)
            org = await self._org_row(session, organisation)
            row = DeviceAuthorisation(device_id=dev.id, organisation_id=org.id, function_group=FunctionGroup(group),
                                      created_at=self._clock())
            session.add(row)
            try:
                await session.flush()
            except IntegrityError as exc:
                raise errors.AuthorisationExists(device, organisation, group) from exc
            log.info("granted %s on %s to %s", group, device, organisation)
            return AuthorisationPublic.of(row, device=device, organisation=organisation)

    async def revoke(self, device: str, organisation: str, group: FunctionGroup) -> bool:
        """Take ``group`` on ``device`` away from ``organisation``; False if it was not held."""
        async with self._sessions.begin() as session:
            dev = await self._device_row(session, device)
            org = await self._org_row(session, organisation)
            result = await session.execute(
                delete(DeviceAuthorisation).where(DeviceAuthorisation.device_id == dev.id,
                                                  DeviceAuthorisation.organisation_id == org.id,
                                                  DeviceAuthorisation.function_group == FunctionGroup(group)))
            revoked = bool(result.rowcount)  # type: ignore[attr-defined]
        if revoked:
            log.info("revoked %s on %s from %s", group, device, organisation)
        return revoked

    async def authorisations(self, device: str) -> list[AuthorisationPublic]:
        """Every function group held on ``device``, by organisation then group."""
        async with self._sessions() as session:
            dev = await self._device_row(session, device)
            rows = await session.execute(
                select(DeviceAuthorisation, Organisation.identification).join(Organisation)
                .where(DeviceAuthorisation.device_id == dev.id)
                .order_by(Organisation.identification, DeviceAuthorisation.function_group))
            return [AuthorisationPublic.of(auth, device=device, organisation=org) for auth, org in rows.all()]

    async def groups(self, organisation: str, device: str) -> frozenset[FunctionGroup]:
        """The function groups ``organisation`` holds on ``device`` (empty if either is unknown)."""
        async with self._sessions() as session:
            rows = await session.scalars(
                select(DeviceAuthorisation.function_group).join(Device).join(Organisation)
                .where(Device.identification == device, Organisation.identification == organisation))
            return frozenset(rows.all())

    async def permission(self, organisation: str, device: str, function: DeviceFunction) -> Decision:
        """Whether ``organisation`` may do ``function`` on ``device``, and why (for a 403 body)."""
        async with self._auto.connect() as conn:
            rows = (await conn.execute(_HELD, {"org": organisation, "device": device})).all()
            if rows:  # both known: one query
                enabled, state = rows[0].enabled, LifecycleState(rows[0].state)
                held = frozenset(FunctionGroup(r.function_group) for r in rows if r.function_group is not None)
            else:  # which one is unknown (the reason says)
                org = (await conn.execute(_ORGANISATION, {"org": organisation})).first()
                dev = (await conn.execute(_DEVICE, {"device": device})).first()
                enabled = org.enabled if org is not None else None
                state = LifecycleState(dev.state) if dev is not None else None
                held = frozenset()
        return authorise(organisation=organisation, device=device, function=function, enabled=enabled,
                         state=state, held=held)

    async def permitted_device(self, organisation: str, device: str,
                               function: DeviceFunction) -> tuple[Decision, DevicePublic | None]:
        """What :meth:`permission` decides, and the device as :meth:`get_device` gives it (None
        if the device or the organisation is unknown): one query when both are known."""
        async with self._auto.connect() as conn:
            rows = (await conn.execute(_HELD_DEVICE, {"org": organisation, "device": device})).all()
        if not rows:
            return await self.permission(organisation, device, function), None
        held = frozenset(FunctionGroup(r.function_group) for r in rows if r.function_group is not None)
        decision = authorise(organisation=organisation, device=device, function=function,
                             enabled=rows[0].organisation_enabled, state=LifecycleState(rows[0].state), held=held)
        return decision, DevicePublic.of(rows[0])

    async def authorised(self, organisation: str, device: str, function: DeviceFunction) -> bool:
        """Whether ``organisation`` may do ``function`` on ``device`` now."""
        return (await self.permission(organisation, device, function)).allowed

    async def meters_for_org(self, organisation: str) -> set[str]:
        """Identifications of the devices whose stored meter data ``organisation`` may read.

        Those it holds OWNER, AD_HOC or MONITORING on (:data:`METER_DATA_GROUPS`), any type and
        any state: a decommissioned meter's history stays readable. A disabled organisation
        may read nothing.
        """
        async with self._sessions() as session:
            rows = await session.scalars(
                select(Device.identification).join(DeviceAuthorisation).join(Organisation)
                .where(Organisation.identification == organisation, Organisation.enabled.is_(True),
                       DeviceAuthorisation.function_group.in_(METER_DATA_GROUPS)).distinct())
            return set(rows.all())

    async def readable_meters(self, organisation: str, meters: Iterable[str]) -> set[str]:
        """Of ``meters``, those whose stored data ``organisation`` may read (as :meth:`meters_for_org`),
        without reading every device it holds."""
        wanted = sorted(set(meters))
        if not wanted:
            return set()
        async with self._auto.connect() as conn:
            return set((await conn.execute(_READABLE, {"org": organisation, "meters": wanted})).scalars())

    # --- helpers ----------------------------------------------------------------------------

    @staticmethod
    async def _device_row(session: AsyncSession, device: str, *, for_update: bool = False) -> Device:
        query = select(Device).where(Device.identification == device)
        if for_update:
            query = query.with_for_update()
        row = await session.scalar(query)
        if row is None:
            raise errors.DeviceNotFound(device)
        return row

    @staticmethod
    async def _org_row(session: AsyncSession, organisation: str) -> Organisation:
        row = await session.scalar(select(Organisation).where(Organisation.identification == organisation))
        if row is None:
            raise errors.OrganisationNotFound(organisation)
        return row


def _payload_format_on_concentrators(row: Device) -> None:
    # Only a concentrator publishes (a meter's messages come through its concentrator).
    if (row.payload_format is not None or row.payload_time_zone is not None) \
            and row.device_type is not DeviceType.CONCENTRATOR:
        raise errors.InvalidChange(f"device {row.identification!r} is a {row.device_type}: payloadFormat and "
                                   f"payloadTimeZone are a concentrator's settings")


def _apply(row: Device, fields: dict[str, Any]) -> None:
    """Copy API-shaped device fields (nested location and grid) onto the flat row."""
    for name, value in fields.items():
        if name in ("location", "grid"):
            keys = ("latitude", "longitude", "address") if name == "location" else ("feeder", "transformer", "substation")
            for key in keys:
                setattr(row, key, None if value is None else value.get(key))
        else:
            setattr(row, name, value)
