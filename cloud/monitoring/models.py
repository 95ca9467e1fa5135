"""Monitoring tables: concentrator liveness, device connectivity, subscriptions, the event log.

On the registry's declarative Base, created by migration ``0003_scheduling`` (subscription
channels and ``notified_at`` by ``0011_device_events``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Integer, String, UniqueConstraint, false, true
from sqlalchemy.orm import Mapped, mapped_column

from cloud.registry.models import ID_LENGTH, Base, UTCDateTime, utcnow


class ConcentratorStateRow(Base):
    """The last accepted birth or death of one concentrator."""

    __tablename__ = "concentrator_state"

    concentrator_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    # The birth counter and timestamp of the message that set the state: a will from an older
    # connection (lower session, older timestamp) must not overwrite a newer birth. 64 bits: the
    # concentrator numbers its connections with the milliseconds at the connect.
    session: Mapped[int] = mapped_column(BigInteger)
    status_at: Mapped[datetime] = mapped_column(UTCDateTime)
    software_version: Mapped[str | None] = mapped_column(String(64))
    outbox_backlog: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(String(512))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DeviceConnectivityRow(Base):
    """Whether the platform currently reaches a device, and since when."""

    __tablename__ = "device_connectivity"

    device_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    online: Mapped[bool] = mapped_column(Boolean)
    since: Mapped[datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str | None] = mapped_column(String(512))


class NotificationSubscriptionRow(Base):
    """One event type an organisation wants published to its apps."""

    __tablename__ = "notification_subscription"
    __table_args__ = (UniqueConstraint("organisation", "event_type", name="uq_notification_subscription_org_event"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    organisation: Mapped[str] = mapped_column(String(ID_LENGTH), index=True)
    event_type: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The channels: the organisation's app topic (app/{org}/monitoring/{type}) and its webhook.
    mqtt: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    webhook: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class MonitoringEventRow(Base):
    """An event as it was raised (the audit trail behind the notifications)."""

    __tablename__ = "monitoring_event"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    event_type: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(16))
    device_id: Mapped[str] = mapped_column(String(ID_LENGTH), index=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
    # When a device event's notifications were handed out (stored in the webhook outbox and
    # published); None until then, so a consumer killed in between hands them out on redelivery.
    notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
