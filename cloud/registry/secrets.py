"""Device secrets in the registry, sealed at rest, and the two phases of a DLMS key change.

Every value is sealed with the platform's sealing key ring (``GRIDWIRE_SECRETS_KEY``,
:mod:`broker.sealing`) for its place, ``device:<identification>:<name>``; a row never holds a
secret in clear, and nothing here returns one to the web API (:class:`SecretPublic` has no
value). Opening needs the ring; moving a pending key to active does not (the sealed text moves
as it is), so the processes that confirm a key change need no sealing key.

A key change: :meth:`DeviceSecrets.begin_change` makes new random keys and keeps them sealed in
``pending`` beside the active ones, under one change id. The concentrator sets them on the
meter and confirms them by associating with them; :meth:`DeviceSecrets.complete_change` then
makes them active. Asked again while a change is pending, ``begin_change`` hands back the same
change (same id, same keys), so a change that failed half-way is sent again rather than
replaced, and the meter, holding either key, converges.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable, Sequence
from datetime import datetime

from pydantic import ConfigDict
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from broker.errors import Invalid
from broker.sealing import KEY_ENV, KeyRing, SealingError, is_sealed
from cloud.registry import errors
from cloud.registry.models import Device, DeviceSecret, utcnow
from cloud.registry.schemas import _Schema

log = logging.getLogger(__name__)

# The secrets a device may have, and what a value must look like.
KEY_NAMES = ("authentication_key", "block_cipher_key", "master_key")
SECRET_NAMES = (*KEY_NAMES, "password")
# The keys a DLMS key change replaces (the master key wraps them, it is not changed here).
CHANGEABLE_KEYS = ("authentication_key", "block_cipher_key")
_HEX_KEY = re.compile(r"^[0-9A-Fa-f]{32}$")


class NoSealingKey(errors.ConflictError):
    """A secret to store or open while the platform has no sealing key."""


class InvalidSecret(errors.RegistryError, Invalid):
    """A secret name or value that can never be right; the message names the secret, not the value."""


class SecretNotFound(errors.NotFoundError):
    """A device secret that is not set."""


class SecretPublic(_Schema):
    """A device secret as listed: which key sealed it and whether a change is pending; never the value."""

    model_config = ConfigDict(extra="ignore")

    name: str
    key_id: str
    pending: bool
    change_id: str | None = None
    updated_at: datetime


def context(device: str, name: str) -> str:
    """What a device secret is sealed for."""
    return f"device:{device}:{name}"


def check_value(name: str, value: str) -> None:
    """Refuse a value that cannot be the secret ``name`` (the message names the secret, not the value)."""
    if name not in SECRET_NAMES:
        raise InvalidSecret(f"unknown secret {name!r}; a device has {', '.join(SECRET_NAMES)}")
    if name in KEY_NAMES and not _HEX_KEY.fullmatch(value):
        raise InvalidSecret(f"{name} must be 32 hex digits (an AES-128 key)")
    if name == "password" and not 1 <= len(value.encode()) <= 64:
        raise InvalidSecret("password must be 1 to 64 bytes")


def check_sealed(ring: KeyRing | None, values: Sequence[tuple[str, str]], *, what: str) -> None:
    """Refuse to run on stored secrets, ``(value, context)`` each, that cannot be used: one in
    clear (named, with the step that seals it), any at all with no ring, or a ring that does not
    open them (one value opened per key id: a missing key, or another key under the same id, is
    named). The rule for every secret the registry holds at rest."""
    checked: set[str] = set()
    for value, where in values:
        if not is_sealed(value):
            raise SealingError(f"{where} is in clear: run `gridwire secrets reseal`")
        if ring is None:
            raise SealingError(f"the registry holds {len(values)} sealed {what} but {KEY_ENV} is not set: "
                               "the platform cannot start without its sealing key")
        kid = ring.key_id_of(value)
        if kid not in checked:
            ring.open(value, context=where)
            checked.add(kid)


class DeviceSecrets:
    """The registry's sealed device secrets. ``ring`` None: nothing can be sealed or opened, but
    secrets can still be listed and pending keys made active."""

    def __init__(self, engine: AsyncEngine, ring: KeyRing | None, *,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._ring = ring
        self._clock = clock

    @property
    def ring(self) -> KeyRing:
        if self._ring is None:
            raise NoSealingKey(f"the platform has no sealing key ({KEY_ENV}): device secrets cannot be "
                               "stored or used")
        return self._ring

    # --- reading ------------------------------------------------------------------------------
    async def list(self, device: str) -> list[SecretPublic]:
        async with self._sessions() as session:
            rows = (await session.execute(
                select(DeviceSecret).join(Device, Device.id == DeviceSecret.device_id)
                .where(Device.identification == device).order_by(DeviceSecret.name))).scalars().all()
        return [self._public(row) for row in rows]

    async def reveal(self, device: str, name: str, *, pending: bool = False) -> str:
        """The clear value, for the platform's own use (a key change); never for an API answer."""
        async with self._sessions() as session:
            row = await self._row(session, device, name)
        value = row.pending if pending else row.active
        if value is None:
            raise SecretNotFound(f"device {device!r} has no pending {name}")
        return self.ring.open(value, context=context(device, name))

    async def count(self) -> int:
        async with self._sessions() as session:
            return int((await session.execute(select(func.count()).select_from(DeviceSecret))).scalar_one())

    async def check_ring(self) -> int:
        """Refuse a ring that cannot open what the registry holds (:func:`check_sealed`);
        returns the secrets held."""
        async with self._sessions() as session:
            rows = (await session.execute(
                select(DeviceSecret.name, DeviceSecret.active, Device.identification)
                .join(Device, Device.id == DeviceSecret.device_id))).all()
        check_sealed(self._ring, [(value, context(device, name)) for name, value, device in rows],
                     what="device secret(s)")
        return len(rows)

    # --- writing ------------------------------------------------------------------------------
    async def set(self, device: str, name: str, value: str) -> SecretPublic:
        """Store (or replace) a secret, sealed. Refused while a key change of it is pending."""
        check_value(name, value)
        sealed = self.ring.seal(value, context=context(device, name))
        async with self._sessions.begin() as session:
            device_row = await self._device(session, device)
            row = (await session.execute(select(DeviceSecret).where(
                DeviceSecret.device_id == device_row.id, DeviceSecret.name == name).with_for_update())).scalar_one_or_none()
            if row is None:
                row = DeviceSecret(device_id=device_row.id, name=name, active=sealed, updated_at=self._clock())
                session.add(row)
            elif row.pending is not None:
                raise errors.InvalidChange(f"a key change of {name} on {device!r} is pending (change "
                                           f"{row.change_id}); it ends when the concentrator confirms it")
            else:
                row.active, row.updated_at = sealed, self._clock()
            await session.flush()
            public = self._public(row)
        log.info("device %s: secret %s set (sealed with key %s)", device, name, public.key_id)
        return public

    async def begin_change(self, device: str, names: tuple[str, ...] = CHANGEABLE_KEYS) -> tuple[str, dict[str, str]]:
        """Make new keys pending (or hand back the change already pending): its id and the clear keys."""
        ring = self.ring
        for name in names:
            if name not in CHANGEABLE_KEYS:
                raise InvalidSecret(f"{name} cannot be changed by a key change; one of "
                                           f"{', '.join(CHANGEABLE_KEYS)}")
        async with self._sessions.begin() as session:
            device_row = await self._device(session, device)
            rows = {row.name: row for row in (await session.execute(select(DeviceSecret).where(
                DeviceSecret.device_id == device_row.id).with_for_update())).scalars()}
            if "master_key" not in rows:
                raise errors.InvalidChange(f"device {device!r} has no master_key: it wraps new keys in a key change")
            missing = [name for name in names if name not in rows]
            if missing:
                raise errors.InvalidChange(f"device {device!r} has no {', '.join(missing)} to change")
            pending = {row.change_id for row in rows.values() if row.pending is not None}
            if pending:
                change_id = pending.pop()
                keys = {name: ring.open(row.pending, context=context(device, name))
                        for name, row in rows.items() if row.pending is not None}
                log.info("device %s: key change %s is still pending; sent again", device, change_id)
                return change_id, keys
            change_id = secrets.token_hex(8)
            keys = {name: secrets.token_bytes(16).hex() for name in names}
            for name, key in keys.items():
                row = rows[name]
                row.pending, row.change_id = ring.seal(key, context=context(device, name)), change_id
                row.updated_at = self._clock()
        log.info("device %s: key change %s begun (%s pending)", device, change_id, ", ".join(names))
        return change_id, keys

    async def complete_change(self, device: str, change_id: str) -> bool:
        """Make the pending keys of ``change_id`` active; False if no such change is pending (done already)."""
        async with self._sessions.begin() as session:
            rows = (await session.execute(
                select(DeviceSecret).join(Device, Device.id == DeviceSecret.device_id)
                .where(Device.identification == device, DeviceSecret.change_id == change_id)
                .with_for_update())).scalars().all()
            for row in rows:
                assert row.pending is not None
                row.active, row.pending, row.change_id = row.pending, None, None
                row.updated_at = self._clock()
        if rows:
            log.info("device %s: key change %s confirmed; its keys are active", device, change_id)
        return bool(rows)

    async def reseal(self) -> int:
        """Seal every secret in clear and reseal every one not sealed with the ring's current key
        (after adding a new key first in the ring): how many values were rewritten."""
        ring = self.ring
        changed = 0
        async with self._sessions.begin() as session:
            rows = (await session.execute(
                select(DeviceSecret, Device.identification).join(Device, Device.id == DeviceSecret.device_id)
                .with_for_update())).all()
            for row, device in rows:
                for column in ("active", "pending"):
                    value = getattr(row, column)
                    if value is not None and ring.needs_reseal(value):
                        setattr(row, column, ring.reseal(value, context=context(device, row.name)))
                        changed += 1
        return changed

    # --- helpers ------------------------------------------------------------------------------
    def _public(self, row: DeviceSecret) -> SecretPublic:
        kid = row.active.split(":")[2] if is_sealed(row.active) else "clear"
        return SecretPublic(name=row.name, key_id=kid, pending=row.pending is not None, change_id=row.change_id,
                            updated_at=row.updated_at)

    @staticmethod
    async def _device(session, device: str) -> Device:  # noqa: ANN001 - an AsyncSession
        row = (await session.execute(select(Device).where(Device.identification == device))).scalar_one_or_none()
        if row is None:
            raise errors.DeviceNotFound(device)
        return row

    async def _row(self, session, device: str, name: str) -> DeviceSecret:  # noqa: ANN001
        device_row = await self._device(session, device)
        row = (await session.execute(select(DeviceSecret).where(
            DeviceSecret.device_id == device_row.id, DeviceSecret.name == name))).scalar_one_or_none()
        if row is None:
            raise SecretNotFound(f"device {device!r} has no {name}")
        return row
