"""The registry's broker accounts, provisioning claims and client certificates: one short
transaction per method."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from broker.accounts import Kind
from broker.errors import NotFound
from cloud.accounts.models import BrokerAccountRow, ClientCertificateRow, ProvisioningClaimRow
from cloud.registry.models import utcnow


class AccountNotFound(NotFound):
    """No broker account of that name (for that organisation)."""


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class AccountStore:
    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], datetime] = utcnow) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._clock = clock

    # --- accounts ---------------------------------------------------------------------------

    async def put_account(self, *, username: str, kind: Kind, subject: str, organisation: str | None) -> None:
        """Record the account (enabled), or bring its record up to date."""
        async with self._sessions.begin() as session:
            row = await session.get(BrokerAccountRow, username)
            if row is None:
                session.add(BrokerAccountRow(username=username, kind=kind.value, subject=subject,
                                             organisation=organisation, disabled=False, created_at=self._clock()))
            else:
                row.kind, row.subject, row.organisation, row.disabled = kind.value, subject, organisation, False

    async def account(self, username: str, *, organisation: str | None = None) -> BrokerAccountRow:
        async with self._sessions() as session:
            row = await session.get(BrokerAccountRow, username)
        if row is None or (organisation is not None and row.organisation != organisation):
            raise AccountNotFound(f"no broker account {username!r}" + (f" of {organisation}" if organisation else ""))
        return row

    async def accounts(self, *, organisation: str | None = None, subject: str | None = None) -> list[BrokerAccountRow]:
        query = select(BrokerAccountRow).order_by(BrokerAccountRow.username)
        if organisation is not None:
            query = query.where(BrokerAccountRow.organisation == organisation)
        if subject is not None:
            query = query.where(BrokerAccountRow.subject == subject)
        async with self._sessions() as session:
            return list((await session.scalars(query)).all())

    async def set_disabled(self, username: str, disabled: bool) -> None:
        async with self._sessions.begin() as session:
            await session.execute(update(BrokerAccountRow).where(BrokerAccountRow.username == username)
                                  .values(disabled=disabled))

    async def delete_account(self, username: str) -> None:
        async with self._sessions.begin() as session:
            await session.execute(delete(BrokerAccountRow).where(BrokerAccountRow.username == username))

    # --- claims -----------------------------------------------------------------------------

    async def add_claim(self, *, token: str, concentrator_id: str, organisation: str, expires_at: datetime) -> None:
        async with self._sessions.begin() as session:
            session.add(ProvisioningClaimRow(token_sha256=token_sha256(token), concentrator_id=concentrator_id,
                                             organisation=organisation, created_at=self._clock(),
                                             expires_at=expires_at))

    async def claim(self, token: str) -> ProvisioningClaimRow | None:
        async with self._sessions() as session:
            return await session.get(ProvisioningClaimRow, token_sha256(token))

    async def redeem(self, token: str, *, public_key_sha256: str, certificate_pem: str) -> bool:
        """Mark the claim used by this key with this certificate; False if it was used already
        (compare-and-set: of two redemptions at once, one wins)."""
        async with self._sessions.begin() as session:
            done = await session.execute(
                update(ProvisioningClaimRow)
                .where(ProvisioningClaimRow.token_sha256 == token_sha256(token),
                       ProvisioningClaimRow.redeemed_at.is_(None))
                .values(redeemed_at=self._clock(), public_key_sha256=public_key_sha256,
                        certificate_pem=certificate_pem))
            return done.rowcount == 1  # type: ignore[attr-defined]

    # --- certificates -----------------------------------------------------------------------

    async def add_certificate(self, *, serial: str, concentrator_id: str, not_after: datetime) -> None:
        async with self._sessions.begin() as session:
            session.add(ClientCertificateRow(serial=serial, concentrator_id=concentrator_id, issued_at=self._clock(),
                                             not_after=not_after))

    async def revoke_certificates(self, concentrator_id: str, *, keep: str | None = None) -> list[str]:
        """Revoke every unrevoked certificate of the concentrator but ``keep``; their serials."""
        now = self._clock()
        async with self._sessions.begin() as session:
            rows = (await session.scalars(select(ClientCertificateRow).where(
                ClientCertificateRow.concentrator_id == concentrator_id,
                ClientCertificateRow.revoked_at.is_(None)))).all()
            revoked = [row for row in rows if row.serial != keep]
            for row in revoked:
                row.revoked_at = now
            return [row.serial for row in revoked]

    async def revoked(self) -> list[tuple[int, datetime]]:
        """Every revoked certificate not yet expired: the CRL's entries."""
        now = self._clock()
        async with self._sessions() as session:
            rows = (await session.scalars(select(ClientCertificateRow).where(
                ClientCertificateRow.revoked_at.is_not(None), ClientCertificateRow.not_after > now))).all()
        return [(int(row.serial, 16), row.revoked_at) for row in rows if row.revoked_at is not None]
