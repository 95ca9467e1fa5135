"""Which organisations may read each meter's readings: the registry's answer, held in memory.

The fan-out asks for every reading it republishes, so the answer is a dict lookup, never a
query per reading. The facts come from the registry (organisations, devices, the function
groups each organisation holds on each device) and the decision from its one rule,
:func:`cloud.registry.functions.authorise`, for :attr:`DeviceFunction.READ_METER_DATA` (OWNER,
AD_HOC or MONITORING; an enabled organisation; a registered device): whoever may query a
meter's stored readings through the API receives them live, nobody else.

Every ``refresh_seconds`` it asks the registry whether anything that decides it changed (a
count and a maximum of the authorisations and of the organisations: one cheap query) and reads
the whole view again only then: an authorisation revoked (or an organisation disabled) stops
the stream within that time plus one read (bench/fanout.py measures it). A refresh that fails
keeps the last view and says so in the log.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Mapping

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from broker.errors import Unavailable
from cloud.registry.functions import DeviceFunction, FunctionGroup, authorise, groups_allowing
from cloud.registry.models import Device, DeviceAuthorisation, Organisation

log = logging.getLogger(__name__)

FUNCTION = DeviceFunction.READ_METER_DATA


class ReadingAccess:
    """The organisations that may read each meter, as the registry said at the last refresh."""

    def __init__(self, *, engine: AsyncEngine, refresh_seconds: float = 5.0) -> None:
        self._engine = engine
        self.refresh_seconds = refresh_seconds
        self._readers: Mapping[str, tuple[str, ...]] = {}
        self._mark: tuple[object, ...] | None = None  # the registry's state at the last read
        self.loads = 0

    def readers(self, meter: str) -> tuple[str, ...]:
        """The organisations that may read ``meter`` (none for a meter nobody may read)."""
        return self._readers.get(meter, ())

    async def refresh(self) -> None:
        """Read the view again if the registry changed; Unavailable if the database cannot be
        reached (the view stays)."""
        try:
            async with self._engine.connect() as conn:
                # What any change to who may read what changes: authorisations granted (a new id)
                # or revoked (fewer rows), an organisation enabled, disabled, added or removed.
                mark = tuple((await conn.execute(
                    select(func.count(), func.max(DeviceAuthorisation.id)).select_from(DeviceAuthorisation))).one())
                mark += tuple((await conn.execute(
                    select(func.count(), func.max(Organisation.updated_at)).select_from(Organisation))).one())
        except SQLAlchemyError as exc:
            raise Unavailable(f"registry unavailable: {exc}") from exc
        if mark == self._mark:
            return
        await self._load()
        self._mark = mark

    async def _load(self) -> None:
        groups = sorted(groups_allowing(FUNCTION))
        query = (select(Organisation.identification, Organisation.enabled, Device.identification.label("device"),
                        Device.state, DeviceAuthorisation.function_group)
                 .join(DeviceAuthorisation, DeviceAuthorisation.organisation_id == Organisation.id)
                 .join(Device, DeviceAuthorisation.device_id == Device.id)
                 .where(DeviceAuthorisation.function_group.in_(groups)))
        try:
            async with self._engine.connect() as conn:
                rows = (await conn.execute(query)).all()
        except SQLAlchemyError as exc:
            raise Unavailable(f"registry unavailable: {exc}") from exc
        held: dict[tuple[str, str], set[FunctionGroup]] = defaultdict(set)
        facts = {}
        for org, enabled, device, state, group in rows:
            held[(org, device)].add(group)
            facts[(org, device)] = (enabled, state)
        # The rule's answer depends on the facts, not on the names: asked once per distinct facts.
        decided: dict[tuple[bool, object, frozenset[FunctionGroup]], bool] = {}
        readers: dict[str, list[str]] = defaultdict(list)
        for (org, device), groups_held in held.items():
            enabled, state = facts[(org, device)]
            key = (enabled, state, frozenset(groups_held))
            allowed = decided.get(key)
            if allowed is None:
                allowed = decided[key] = authorise(organisation=org, device=device, function=FUNCTION,
                                                   enabled=enabled, state=state, held=key[2]).allowed
            if allowed:
                readers[device].append(org)
        view = {device: tuple(sorted(orgs)) for device, orgs in readers.items()}
        changed = view != self._readers
        self._readers = view
        self.loads += 1
        if changed:
            log.info("reading access changed: %d meters readable by some organisation", len(view))

    async def run(self, stop: asyncio.Event) -> None:
        """Refresh every ``refresh_seconds`` until ``stop``; an outage keeps the last view."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), self.refresh_seconds)
            except TimeoutError:
                pass
            else:
                return
            try:
                await self.refresh()
            except Unavailable as exc:
                log.warning("reading access: keeping the last view: %s", exc)
