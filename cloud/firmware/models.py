"""Firmware OTA tables: the firmware catalogue, campaigns, their waves and per-device targets.

On the registry's declarative Base, created by migration ``0005_firmware_ota``. Image bytes are
never here: they live in the filesystem store (:mod:`firmware_ota.store`); the ``firmware`` table
holds what an operator lists and searches by.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from cloud.registry.models import ID_LENGTH, Base, UTCDateTime, utcnow

FIRMWARE_ID_LENGTH = 128
UUID_LENGTH = 36
STATE_LENGTH = 24
REASON_LENGTH = 1024


class FirmwareRow(Base):
    """A firmware image in the store: its manifest fields and who uploaded it."""

    __tablename__ = "firmware"

    firmware_id: Mapped[str] = mapped_column(String(FIRMWARE_ID_LENGTH), primary_key=True)
    version: Mapped[str] = mapped_column(String(64))
    device_models: Mapped[list[str]] = mapped_column(JSON)
    image_identifier: Mapped[str] = mapped_column(String(128))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str] = mapped_column(String(64))
    # The whole signed manifest (small): what a campaign sends to each device.
    signed_manifest: Mapped[dict[str, Any]] = mapped_column(JSON)
    manifest_created: Mapped[datetime] = mapped_column(UTCDateTime)
    uploaded_by: Mapped[str] = mapped_column(String(ID_LENGTH))
    uploaded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CampaignRow(Base):
    """A rollout of one firmware to many devices, in waves, with its thresholds and state."""

    __tablename__ = "campaign"

    id: Mapped[str] = mapped_column(String(UUID_LENGTH), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    organisation: Mapped[str] = mapped_column(String(ID_LENGTH), index=True)
    firmware_id: Mapped[str] = mapped_column(ForeignKey("firmware.firmware_id"), index=True)
    state: Mapped[str] = mapped_column(String(STATE_LENGTH))
    state_reason: Mapped[str | None] = mapped_column(String(REASON_LENGTH))
    # Whether a runner still has work here: issuing, or following commands in flight.
    active: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    grouping: Mapped[str] = mapped_column(String(16))
    max_groups_per_wave: Mapped[int] = mapped_column(Integer)
    canary_size: Mapped[int] = mapped_column(Integer)
    success_threshold: Mapped[int] = mapped_column(Integer)
    error_threshold: Mapped[int] = mapped_column(Integer)
    max_in_flight: Mapped[int] = mapped_column(Integer)
    max_in_flight_per_feeder: Mapped[int] = mapped_column(Integer)
    max_attempts: Mapped[int] = mapped_column(Integer)
    retry_delay_seconds: Mapped[int] = mapped_column(Integer)
    command_ttl_seconds: Mapped[int] = mapped_column(Integer)
    current_wave: Mapped[int] = mapped_column(Integer, default=0)
    # The runner that advances this campaign now, and until when (another takes over after).
    runner: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(ID_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class CampaignWaveRow(Base):
    """One wave of a campaign: the topology groups it covers and how many targets it has."""

    __tablename__ = "campaign_wave"

    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"), primary_key=True)
    index: Mapped[int] = mapped_column(Integer, primary_key=True)
    groups: Mapped[list[str]] = mapped_column(JSON)
    canary: Mapped[bool] = mapped_column(Boolean, default=False)
    target_count: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class CampaignTargetRow(Base):
    """One device of a campaign: its wave, where it is in its update, and why it failed."""

    __tablename__ = "campaign_target"
    __table_args__ = (
        UniqueConstraint("campaign_id", "device", name="uq_campaign_target_device"),
        # The runner's questions: this campaign's targets in a state, by wave.
        Index("ix_campaign_target_campaign_state", "campaign_id", "state", "wave"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"))
    device: Mapped[str] = mapped_column(String(ID_LENGTH))
    wave: Mapped[int] = mapped_column(Integer)
    group_key: Mapped[str] = mapped_column(String(ID_LENGTH))
    feeder: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    concentrator_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    state: Mapped[str] = mapped_column(String(STATE_LENGTH))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # The command of the current (or last) attempt: one id per attempt, so re-publishing after
    # a crash cannot make a second command.
    command_id: Mapped[str | None] = mapped_column(String(UUID_LENGTH), unique=True)
    # Which runner issued the current attempt (host:pid or its client id), for operators.
    issued_by: Mapped[str | None] = mapped_column(String(128))
    failure_code: Mapped[str | None] = mapped_column(String(64))
    failure_reason: Mapped[str | None] = mapped_column(String(REASON_LENGTH))
    reported_version: Mapped[str | None] = mapped_column(String(64))
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime)
    issued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
