"""Organisations' API keys, and the platform's bootstrap (its first administrator).

A key is ``gw_<id>.<secret>``: the id names the row, the secret (32 random bytes) is kept only
as its SHA-256, so the token is shown once, when made. Every request made with a key reads its
row (one query, joined with the organisation): a revoked or expired key, or a disabled
organisation, is refused at once by every API process sharing the database, with no cache to
wait out.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from pydantic import AwareDatetime, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from broker.errors import Forbidden, Invalid
from cloud.registry import errors
from cloud.registry.enums import PlatformRole
from cloud.registry.functions import FunctionGroup
from cloud.registry.models import ApiKey, Bootstrap, Organisation, utcnow
from cloud.registry.schemas import OrganisationPublic, ShortText, _Schema

log = logging.getLogger(__name__)

PREFIX = "gw_"


class KeyRefused(Forbidden):
    """A key that does not authenticate anyone now; the message says why (safe to show)."""


class AlreadyBootstrapped(errors.ConflictError):
    """``admin init`` on a registry that already has organisations."""


class ApiKeyCreate(_Schema):
    """A key to make: its name, optional expiry and the function groups it is limited to."""

    name: ShortText
    expires_at: AwareDatetime | None = None
    function_groups: list[FunctionGroup] | None = Field(
        default=None, min_length=1, max_length=len(FunctionGroup),
        description="Limit the key to these groups' functions (default: not limited)")


class ApiKeyPublic(_Schema):
    """A key as listed: never its secret."""

    model_config = ConfigDict(extra="ignore")

    id: str
    organisation: str
    name: str
    function_groups: list[FunctionGroup] | None = None
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None


class ApiKeyIssued(ApiKeyPublic):
    """A key just made: ``token`` is shown this once and cannot be recovered."""

    token: str


@dataclass(frozen=True, slots=True)
class KeyHolder:
    """Who a verified key speaks for, as the registry has it now."""

    organisation: OrganisationPublic
    key_id: str
    scope: frozenset[FunctionGroup] | None


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _scope_text(groups: Iterable[FunctionGroup] | None) -> str | None:
    return None if groups is None else ",".join(sorted({FunctionGroup(g).value for g in groups}))


def _scope_of(text: str | None) -> frozenset[FunctionGroup] | None:
    return None if text is None else frozenset(FunctionGroup(g) for g in text.split(",") if g)


def _public(row: ApiKey, organisation: str) -> ApiKeyPublic:
    scope = _scope_of(row.scope)
    return ApiKeyPublic(id=row.id, organisation=organisation, name=row.name,
                        function_groups=None if scope is None else sorted(scope), created_at=row.created_at,
                        expires_at=row.expires_at, revoked_at=row.revoked_at)


class ApiKeys:
    """Create, list, revoke and verify keys, on the registry's database."""

    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], datetime] = utcnow) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._clock = clock

    async def create(self, organisation: str, spec: ApiKeyCreate) -> ApiKeyIssued:
        """A new key for ``organisation``; its token is in the answer and nowhere else."""
        now = self._clock()
        if spec.expires_at is not None and spec.expires_at <= now:
            raise Invalid("expiresAt is in the past")
        async with self._sessions.begin() as session:
            org = await session.scalar(select(Organisation).where(Organisation.identification == organisation))
            if org is None:
                raise errors.OrganisationNotFound(organisation)
            return self._add(session, org, spec.name, spec.function_groups, spec.expires_at, now)

    def _add(self, session: object, org: Organisation, name: str, groups: Iterable[FunctionGroup] | None,
             expires_at: datetime | None, now: datetime) -> ApiKeyIssued:
        key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        row = ApiKey(id=key_id, organisation=org, name=name, secret_hash=_hash(secret), scope=_scope_text(groups),
                     created_at=now, expires_at=expires_at)
        session.add(row)  # type: ignore[attr-defined]
        log.info("API key %s (%s) made for %s", key_id, name, org.identification)
        return ApiKeyIssued(**_public(row, org.identification).model_dump(), token=f"{PREFIX}{key_id}.{secret}")

    async def list(self, organisation: str) -> list[ApiKeyPublic]:
        """Every key of ``organisation``, revoked ones too, oldest first."""
        async with self._sessions() as session:
            org = await session.scalar(select(Organisation).where(Organisation.identification == organisation))
            if org is None:
                raise errors.OrganisationNotFound(organisation)
            rows = await session.scalars(select(ApiKey).where(ApiKey.organisation_id == org.id)
                                         .order_by(ApiKey.created_at, ApiKey.id))
            return [_public(row, organisation) for row in rows.all()]

    async def revoke(self, organisation: str, key_id: str) -> ApiKeyPublic:
        """Revoke a key of ``organisation`` (again: harmless); NotFoundError for another's key."""
        async with self._sessions.begin() as session:
            row = await session.scalar(select(ApiKey).join(Organisation).where(
                ApiKey.id == key_id, Organisation.identification == organisation).with_for_update())
            if row is None:
                raise errors.NotFoundError(f"organisation {organisation!r} has no API key {key_id!r}")
            if row.revoked_at is None:
                row.revoked_at = self._clock()
                log.info("API key %s of %s revoked", key_id, organisation)
            return _public(row, organisation)

    async def verify(self, token: str) -> KeyHolder:
        """Who ``token`` speaks for now; KeyRefused with the reason otherwise."""
        key_id, dot, secret = token.removeprefix(PREFIX).partition(".")
        if not token.startswith(PREFIX) or not dot or not key_id or not secret or len(key_id) > 32:
            raise KeyRefused("malformed API key")
        async with self._sessions() as session:
            found = (await session.execute(select(ApiKey, Organisation).join(Organisation)
                                           .where(ApiKey.id == key_id))).first()
        if found is None or not hmac.compare_digest(found[0].secret_hash, _hash(secret)):
            raise KeyRefused("unknown API key")
        key, org = found
        if key.revoked_at is not None:
            raise KeyRefused(f"API key {key_id} was revoked")
        if key.expires_at is not None and self._clock() >= key.expires_at:
            raise KeyRefused(f"API key {key_id} has expired")
        if not org.enabled:
            raise KeyRefused(f"organisation {org.identification!r} is disabled")
        return KeyHolder(organisation=OrganisationPublic.of(org), key_id=key_id, scope=_scope_of(key.scope))

    async def bootstrap(self, identification: str, name: str) -> ApiKeyIssued:
        """The first platform administrator and an unlimited key for it, on an empty registry.

        AlreadyBootstrapped, with nothing changed, if the registry has any organisation or was
        bootstrapped before (the marker row's primary key also stops two at once)."""
        now = self._clock()
        try:
            async with self._sessions.begin() as session:
                existing = await session.scalar(select(func.count()).select_from(Organisation))
                if existing:
                    raise AlreadyBootstrapped(f"the registry already has {existing} organisation(s); "
                                              "admin init only runs on an empty registry")
                session.add(Bootstrap(id=1, organisation=identification, created_at=now))
                org = Organisation(identification=identification, name=name, enabled=True, role=PlatformRole.ADMIN,
                                   created_at=now, updated_at=now)
                session.add(org)
                await session.flush()
                issued = self._add(session, org, "admin init", None, None, now)
        except IntegrityError as exc:
            raise AlreadyBootstrapped("the registry was bootstrapped already") from exc
        log.info("platform bootstrapped: administrator %s", identification)
        return issued
