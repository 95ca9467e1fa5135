"""Which concentrators and meters ingest takes readings from: a cached view of the registry.

A reading is stored only if the registry knows the concentrator whose topic it came on and
the meter it is from, and that meter is reached through that concentrator (a device that
talks to the broker itself sends on its own ``concentrator/<its id>/...`` subtree). Anything
else is refused with the reason and dead-lettered (``GRIDWIRE_INGEST_UNKNOWN_SENDERS=refuse``,
the default); ``accept`` stores readings from anyone, for commissioning a fleet before it is
registered.

Ingest asks the view for every message, so the view is a few dicts in memory, never a query
per reading. It is kept up to date in the background: every ``refresh_seconds`` it reads the
devices changed since its last look (by ``updated_at``, with an overlap for clocks that
differ between hosts) and reloads everything when the device count says it missed one, or
every ``full_reload_seconds``. A sender it does not know makes it look again (at once, or
after ``miss_seconds`` since the last look), and it is refused only if a look begun after its
message arrived does not know it either: a device registered a moment ago is not refused for
a stale view. While the database cannot be reached, that look raises ``Unavailable`` and the
message waits for it, like any other message whose collaborator is down.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from broker.errors import Unavailable
from cloud.registry.enums import DeviceType, LifecycleState
from cloud.registry.models import Device

log = logging.getLogger(__name__)

_CONCENTRATOR_TYPES = frozenset({DeviceType.CONCENTRATOR, DeviceType.GATEWAY})
_OVERLAP = timedelta(seconds=60)
_COLUMNS = (Device.identification, Device.device_type, Device.concentrator_id, Device.state, Device.updated_at)


class UnknownSenders(StrEnum):
    """What ingest does with readings from a sender the registry does not know."""

    REFUSE = "refuse"  # dead letters, with the reason (the default)
    ACCEPT = "accept"  # stored anyway: commissioning, before the fleet is registered


@dataclass(frozen=True, slots=True)
class _Known:
    device_type: DeviceType
    concentrator_id: str | None
    retired: bool


class KnownSenders:
    """The registry's devices as ingest needs them; :meth:`problem` is the hot path."""

    def __init__(self, *, engine: AsyncEngine, refresh_seconds: float = 5.0, full_reload_seconds: float = 300.0,
                 miss_seconds: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._engine = engine
        self.refresh_seconds = refresh_seconds
        self._full_every = full_reload_seconds
        self._miss_every = miss_seconds
        self._clock = clock
        self._devices: dict[str, _Known] = {}
        self._loaded = False
        self._since: datetime | None = None  # the latest ``updated_at`` seen
        self._loaded_at = float("-inf")
        self._looked_at = float("-inf")
        self._lock = asyncio.Lock()
        self._looking: asyncio.Future[None] | None = None  # a look a miss started, shared by the others
        self.loads = 0
        self.refreshes = 0

    def problem(self, concentrator: str, meter: str) -> str | None:
        """Why readings of ``meter`` on ``concentrator``'s topic are refused, or None (accepted)."""
        devices = self._devices
        sender = devices.get(concentrator)
        known = devices.get(meter)
        if sender is not None and known is not None and not sender.retired and not known.retired:
            if known.concentrator_id == concentrator and sender.device_type in _CONCENTRATOR_TYPES:
                return None
            if meter == concentrator and known.concentrator_id is None:
                return None  # a device talking to the broker itself, on its own subtree
        return _why(devices, concentrator, meter)

    async def check(self, concentrator: str, meter: str) -> str | None:
        """:meth:`problem`, as a look at the registry made after this call began says: a
        device registered before its first reading arrived is never refused for a stale view."""
        problem = self.problem(concentrator, meter)
        if problem is None:
            return None
        arrived = self._clock()
        while self._looked_at < arrived:
            if self._looking is None:
                # One look for every message that misses meanwhile, at most one per miss_seconds.
                self._looking = asyncio.ensure_future(self._look_soon())
                self._looking.add_done_callback(self._looked)
            await asyncio.shield(self._looking)
        return self.problem(concentrator, meter)

    async def _look_soon(self) -> None:
        wait = self._looked_at + self._miss_every - self._clock()
        if wait > 0:
            await asyncio.sleep(wait)
        await self.refresh()

    def _looked(self, looking: asyncio.Future[None]) -> None:
        self._looking = None
        if not looking.cancelled():
            looking.exception()  # retrieved: each waiting handler got it already

    async def refresh(self) -> None:
        """Bring the view up to date: the changed devices, or all of them when due or needed.
        Unavailable if the database cannot be reached (the view stays as it was)."""
        async with self._lock:
            self._looked_at = self._clock()
            try:
                if not self._loaded or self._clock() - self._loaded_at >= self._full_every:
                    await self._load_all()
                else:
                    await self._load_changed()
            except SQLAlchemyError as exc:
                raise Unavailable(f"registry unavailable: {exc}") from exc

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
                log.warning("known senders: keeping the last view: %s", exc)

    async def _load_all(self) -> None:
        async with self._engine.connect() as conn:
            rows = (await conn.execute(select(*_COLUMNS))).all()
        self._devices = {row.identification: _known(row) for row in rows}
        self._since = max((row.updated_at for row in rows if row.updated_at is not None), default=None)
        self._loaded, self._loaded_at = True, self._clock()
        self.loads += 1
        log.info("known senders: %d devices in the registry", len(self._devices))

    async def _load_changed(self) -> None:
        changed = select(*_COLUMNS)
        if self._since is not None:
            changed = changed.where(Device.updated_at >= self._since - _OVERLAP)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(changed)).all()
            count = (await conn.execute(select(func.count()).select_from(Device))).scalar_one()
        if rows:
            devices = dict(self._devices)
            devices.update({row.identification: _known(row) for row in rows})
            self._devices = devices
            stamps = [row.updated_at for row in rows if row.updated_at is not None]
            if stamps:
                self._since = max(stamps if self._since is None else [self._since, *stamps])
        self.refreshes += 1
        if count != len(self._devices):  # a change the overlap did not catch (or a device deleted)
            await self._load_all()


def _known(row: Any) -> _Known:
    return _Known(device_type=DeviceType(row.device_type), concentrator_id=row.concentrator_id,
                  retired=row.state == LifecycleState.DECOMMISSIONED)


def _why(devices: dict[str, _Known], concentrator: str, meter: str) -> str:
    sender, known = devices.get(concentrator), devices.get(meter)
    if sender is None:
        return f"unknown sender: concentrator {concentrator!r} is not in the registry"
    if sender.retired:
        return f"unknown sender: concentrator {concentrator!r} is decommissioned"
    if known is None:
        return f"unknown sender: meter {meter!r} is not in the registry"
    if known.retired:
        return f"unknown sender: meter {meter!r} is decommissioned"
    if meter == concentrator or sender.device_type in _CONCENTRATOR_TYPES:
        owner = f"concentrator {known.concentrator_id!r}" if known.concentrator_id else "no concentrator"
        return f"unknown sender: meter {meter!r} belongs to {owner}, not to {concentrator!r}"
    return f"unknown sender: {concentrator!r} is a {sender.device_type.value}, not a concentrator or gateway"
