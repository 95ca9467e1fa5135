"""The registry's record of broker accounts, provisioning claims and client certificates.

Created only by the Alembic revision ``0009_broker_accounts``; the tables live on the registry's
declarative Base so the registry's migration test compares them too. The registry is the source
of truth: the broker (:class:`broker.accounts.BrokerAccounts`) holds a copy, brought in line by
:class:`cloud.accounts.service.AccountService`. Passwords are never stored here (the broker keeps
a salted hash); a claim token is stored as its SHA-256.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from cloud.registry.models import ID_LENGTH, Base, UTCDateTime, utcnow

USERNAME_LENGTH = 128
SERIAL_LENGTH = 40  # a 159-bit serial in hexadecimal
HASH_LENGTH = 64  # SHA-256 in hexadecimal


class BrokerAccountRow(Base):
    """One broker login: its kind (broker/accounts.py Kind), what it is fenced to, its organisation."""

    __tablename__ = "broker_account"
    __table_args__ = (Index("ix_broker_account_organisation", "organisation"),)

    username: Mapped[str] = mapped_column(String(USERNAME_LENGTH), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(String(ID_LENGTH))
    organisation: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ProvisioningClaimRow(Base):
    """A one-time claim: who may redeem it for which concentrator, until when, and what it gave."""

    __tablename__ = "provisioning_claim"

    token_sha256: Mapped[str] = mapped_column(String(HASH_LENGTH), primary_key=True)
    concentrator_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    organisation: Mapped[str] = mapped_column(String(ID_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    redeemed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The key it was redeemed with and the certificate issued: the same key asking again (an
    # answer lost on the way) gets the same certificate back; another key is refused.
    public_key_sha256: Mapped[str | None] = mapped_column(String(HASH_LENGTH))
    certificate_pem: Mapped[str | None] = mapped_column(Text)


class ClientCertificateRow(Base):
    """A client certificate the platform's CA issued, and its revocation (the CRL's entries)."""

    __tablename__ = "client_certificate"
    __table_args__ = (Index("ix_client_certificate_concentrator_id", "concentrator_id"),)

    serial: Mapped[str] = mapped_column(String(SERIAL_LENGTH), primary_key=True)
    concentrator_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    not_after: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
