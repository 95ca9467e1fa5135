"""Pydantic shapes of the firmware and campaign web API: camelCase on the wire."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from broker.schemas.firmware import FIRMWARE_ID_PATTERN
from firmware_ota.campaign_logic import CampaignState, TargetState
from firmware_ota.campaign_plan import Grouping

DeviceId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
Percent = Annotated[int, Field(ge=0, le=100)]


class _Schema(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class FirmwarePublic(_Schema):
    """A firmware in the repository, as an operator sees it."""

    firmware_id: str
    version: str
    device_models: list[str]
    image_identifier: str
    size: int
    sha256: str
    key_id: str
    manifest_created: datetime
    uploaded_by: str
    uploaded_at: datetime


class CampaignCreate(_Schema):
    """A rollout to create: what, to whom, and how carefully."""

    name: str = Field(min_length=1, max_length=128)
    firmware_id: str = Field(pattern=FIRMWARE_ID_PATTERN)
    # Explicit targets, and/or every device of this organisation whose model the firmware fits.
    devices: list[DeviceId] = Field(default_factory=list, max_length=100_000)
    all_devices_of: DeviceId | None = None
    grouping: Grouping = Grouping.FEEDER
    max_groups_per_wave: int = Field(default=1, ge=1, le=10_000)
    canary_size: int = Field(default=1, ge=0, le=10_000)
    # Go on to the next wave once this share of the current one succeeded.
    success_threshold: Percent = 100
    # Stop the campaign (FAILED_THRESHOLD) once more than this share of a wave failed.
    error_threshold: Percent = 0
    max_in_flight: int = Field(default=50, ge=1, le=100_000)
    max_in_flight_per_feeder: int = Field(default=10, ge=1, le=100_000)
    max_attempts: int = Field(default=3, ge=1, le=20)
    retry_delay_seconds: int = Field(default=60, ge=0, le=86_400)
    # Firmware updates are slow: a command's own time-to-live, default 30 minutes.
    command_ttl_seconds: int = Field(default=1800, ge=10, le=86_400)
    start: bool = False

    @model_validator(mode="after")
    def _some_targets(self) -> CampaignCreate:
        if not self.devices and self.all_devices_of is None:
            raise ValueError("name the target devices, allDevicesOf an organisation, or both")
        if len(set(self.devices)) != len(self.devices):
            raise ValueError("a device is listed twice in devices")
        return self


class WavePublic(_Schema):
    """One wave of a campaign and how its targets stand."""

    index: int
    canary: bool
    groups: list[str]
    started_at: datetime | None = None
    counts: dict[TargetState, int]


class CampaignPublic(_Schema):
    """A campaign's settings and state."""

    id: str
    name: str
    organisation: str
    firmware_id: str
    version: str
    state: CampaignState
    state_reason: str | None = None
    active: bool
    grouping: Grouping
    max_groups_per_wave: int
    canary_size: int
    success_threshold: int
    error_threshold: int
    max_in_flight: int
    max_in_flight_per_feeder: int
    max_attempts: int
    retry_delay_seconds: int
    command_ttl_seconds: int
    current_wave: int
    wave_count: int
    target_count: int
    created_by: str
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None


class FailedTarget(_Schema):
    """A device the campaign could not update, and why."""

    device: str
    wave: int
    group: str
    attempts: int
    failure_code: str | None
    failure_reason: str | None
    command_id: str | None
    finished_at: datetime | None


class CampaignStatus(_Schema):
    """A campaign's progress: counts per state overall and per wave, and what failed and why."""

    campaign: CampaignPublic
    counts: dict[TargetState, int]
    waves: list[WavePublic]
    failed: list[FailedTarget]


class TargetPublic(_Schema):
    """One device of a campaign."""

    device: str
    wave: int
    group: str
    state: TargetState
    attempts: int
    command_id: str | None = None
    failure_code: str | None = None
    failure_reason: str | None = None
    reported_version: str | None = None
    issued_at: datetime | None = None
    finished_at: datetime | None = None
    extra: dict[str, Any] | None = None
