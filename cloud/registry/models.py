"""SQLAlchemy 2 tables of the device registry: devices, organisations, authorisations.

The schema is created and changed only by the Alembic migrations in
``cloud/migrations``; a test checks that they and these models agree.
Enums are stored as plain strings (no PostgreSQL ENUM types) so adding a device type is a
model change, not a type migration. Times are stored in UTC and come back timezone-aware on
SQLite as well as PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import (
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from cloud.registry.enums import DeviceType, LifecycleState, PlatformRole, Protocol
from cloud.registry.functions import FunctionGroup

# Named constraints: SQLite batch migrations can only drop or alter what has a name.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ID_LENGTH = 64


def utcnow() -> datetime:
    """The current time in UTC, timezone-aware."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC; naive values from SQLite are read back as UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the registry; attach a timezone")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _enum(cls: type[StrEnum]) -> Enum:
    # VARCHAR without a CHECK constraint: values are validated in Python at the boundary.
    return Enum(cls, native_enum=False, length=32, create_constraint=False,
                values_callable=lambda members: [m.value for m in members], validate_strings=True)


class Base(DeclarativeBase):
    """Declarative base carrying the registry's metadata and naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Organisation(Base):
    """An organisation (utility, operator, app vendor) that uses devices through the platform."""

    __tablename__ = "organisation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    identification: Mapped[str] = mapped_column(String(ID_LENGTH), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    role: Mapped[PlatformRole] = mapped_column(_enum(PlatformRole), default=PlatformRole.USER)
    webhook_url: Mapped[str | None] = mapped_column(String(2048))
    # Sealed (cloud.registry.webhook_secrets), never in clear: a 255-character secret seals to
    # about 400 characters, so the column is text.
    webhook_secret: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    authorisations: Mapped[list[DeviceAuthorisation]] = relationship(
        back_populates="organisation", cascade="all, delete-orphan", passive_deletes=True)


class Device(Base):
    """A grid device known to the platform: what it is, how to reach it, where it sits."""

    __tablename__ = "device"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    identification: Mapped[str] = mapped_column(String(ID_LENGTH), unique=True)
    device_type: Mapped[DeviceType] = mapped_column(_enum(DeviceType))
    protocol: Mapped[Protocol] = mapped_column(_enum(Protocol))
    protocol_version: Mapped[str | None] = mapped_column(String(32))
    # The identification of the concentrator or gateway that reaches this device; None for a
    # device that talks to the broker itself (and for concentrators).
    concentrator_id: Mapped[str | None] = mapped_column(String(ID_LENGTH), index=True)
    state: Mapped[LifecycleState] = mapped_column(_enum(LifecycleState), default=LifecycleState.REGISTERED)
    model: Mapped[str | None] = mapped_column(String(128))
    firmware_version: Mapped[str | None] = mapped_column(String(64))
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    address: Mapped[str | None] = mapped_column(String(512))
    feeder: Mapped[str | None] = mapped_column(String(ID_LENGTH), index=True)
    transformer: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    substation: Mapped[str | None] = mapped_column(String(ID_LENGTH), index=True)
    # A concentrator's payload format when it is not Gridwire's ("omdp-reference": the OMDP
    # reference concentrator's flat payload, which ingest then maps) and the time zone of its
    # local reading times (cloud/ingest/omdp_reference.py).
    payload_format: Mapped[str | None] = mapped_column(String(32))
    payload_time_zone: Mapped[str | None] = mapped_column(String(64))
    last_seen: Mapped[datetime | None] = mapped_column(UTCDateTime)
    comm_success_count: Mapped[int] = mapped_column(Integer, default=0)
    comm_failure_count: Mapped[int] = mapped_column(Integer, default=0)
    # Reset by a success: what device status monitoring alarms on.
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_failure_reason: Mapped[str | None] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    authorisations: Mapped[list[DeviceAuthorisation]] = relationship(
        back_populates="device", cascade="all, delete-orphan", passive_deletes=True)


class DeviceAuthorisation(Base):
    """One function group an organisation holds on one device."""

    __tablename__ = "device_authorisation"
    __table_args__ = (
        UniqueConstraint("device_id", "organisation_id", "function_group", name="uq_device_authorisation_grant"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("device.id", ondelete="CASCADE"))
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisation.id", ondelete="CASCADE"), index=True)
    function_group: Mapped[FunctionGroup] = mapped_column(_enum(FunctionGroup))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    device: Mapped[Device] = relationship(back_populates="authorisations")
    organisation: Mapped[Organisation] = relationship(back_populates="authorisations")


class ApiKey(Base):
    """An organisation's API key: only the SHA-256 of its secret is kept (the secret is shown once).

    ``scope`` is the comma-separated function groups the key is limited to (NULL: every group the
    organisation holds). The row is read on every request made with the key, so a revocation
    holds at once in every API process.
    """

    __tablename__ = "api_key"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisation.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    secret_hash: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str | None] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    organisation: Mapped[Organisation] = relationship()


class Bootstrap(Base):
    """The one row ``gridwire admin init`` writes: its primary key makes a second bootstrap fail
    in the database, even when two run at once."""

    __tablename__ = "platform_bootstrap"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    organisation: Mapped[str] = mapped_column(String(ID_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DeviceSecret(Base):
    """A device secret (a DLMS key or password), sealed with the platform's sealing key
    (:mod:`broker.sealing`, context ``device:<identification>:<name>``); never stored in clear.

    A key change is two-phase: the new key waits in ``pending`` (with its ``change_id``) while the
    concentrator sets it on the meter and confirms with it; only then does it become ``active``.
    """

    __tablename__ = "device_secret"
    __table_args__ = (UniqueConstraint("device_id", "name", name="uq_device_secret_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("device.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(32))
    active: Mapped[str] = mapped_column(Text)
    pending: Mapped[str | None] = mapped_column(Text)
    change_id: Mapped[str | None] = mapped_column(String(32))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
