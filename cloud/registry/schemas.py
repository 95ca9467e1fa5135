"""Pydantic shapes going in and out of the registry (and its admin API): camelCase on the wire."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, AnyHttpUrl, BaseModel, ConfigDict, Field, SecretStr, StrictBool, field_validator, model_validator
from pydantic.alias_generators import to_camel

from cloud.registry.enums import DeviceType, LifecycleState, PayloadFormat, PlatformRole, Protocol
from cloud.registry.functions import FunctionGroup
from cloud.registry.models import Device, DeviceAuthorisation, Organisation

# Identifiers become MQTT topic levels (concentrator/{cid}/..., app/{org}/...), so no '/', '+',
# '#', spaces or leading '$'.
Identification = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
ShortText = Annotated[str, Field(min_length=1, max_length=128)]


def _known_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (an IANA name such as Europe/Amsterdam)") from None
    return name


# An IANA time zone name (a concentrator's local reading times).
TimeZoneName = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_known_zone)]


class _Schema(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class Location(_Schema):
    """Where a device is: coordinates (WGS84) and/or a postal address."""

    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)
    address: str | None = Field(default=None, max_length=512)

    @model_validator(mode="after")
    def _both_coordinates(self) -> Location:
        if (self.latitude is None) != (self.longitude is None):
            raise ValueError("latitude and longitude go together")
        return self


class GridPosition(_Schema):
    """Where a device hangs in the grid: what firmware waves and switching pacing group by."""

    feeder: Identification | None = None
    transformer: Identification | None = None
    substation: Identification | None = None


class DeviceBase(_Schema):
    """What is shared by creating, changing and showing a device."""

    device_type: DeviceType
    protocol: Protocol
    protocol_version: str | None = Field(default=None, max_length=32)
    concentrator_id: Identification | None = None
    model: ShortText | None = None
    firmware_version: str | None = Field(default=None, min_length=1, max_length=64)
    location: Location | None = None
    grid: GridPosition | None = None
    payload_format: PayloadFormat | None = None
    payload_time_zone: TimeZoneName | None = None


class DeviceCreate(DeviceBase):
    """A device to register (or install, from the installation API)."""

    identification: Identification
    state: LifecycleState = LifecycleState.REGISTERED

    @field_validator("state")
    @classmethod
    def _not_decommissioned(cls, value: LifecycleState) -> LifecycleState:
        if value is LifecycleState.DECOMMISSIONED:
            raise ValueError("a device cannot be created decommissioned")
        return value

    @model_validator(mode="after")
    def _not_behind_itself(self) -> DeviceCreate:
        if self.concentrator_id == self.identification:
            raise ValueError("a device cannot sit behind itself")
        return self


class DeviceUpdate(_Schema):
    """A change to a device: only the fields given are changed; null clears an optional field.

    ``location`` and ``grid`` are replaced as a whole when given.
    """

    device_type: DeviceType | None = None
    protocol: Protocol | None = None
    protocol_version: str | None = Field(default=None, max_length=32)
    concentrator_id: Identification | None = None
    model: ShortText | None = None
    firmware_version: str | None = Field(default=None, min_length=1, max_length=64)
    location: Location | None = None
    grid: GridPosition | None = None
    payload_format: PayloadFormat | None = None
    payload_time_zone: TimeZoneName | None = None
    state: LifecycleState | None = None

    @model_validator(mode="after")
    def _required_stay_set(self) -> DeviceUpdate:
        for name in ("device_type", "protocol", "state"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{to_camel(name)} cannot be cleared")
        return self


class DevicePublic(DeviceBase):
    """A device as the registry knows it, status counters included."""

    model_config = ConfigDict(extra="ignore")

    identification: str
    state: LifecycleState
    last_seen: datetime | None = None
    comm_success_count: int = 0
    comm_failure_count: int = 0
    consecutive_failures: int = 0
    last_failure_at: datetime | None = None
    last_failure_reason: str | None = None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: Device) -> DevicePublic:
        location = None
        if row.latitude is not None or row.address is not None:
            location = Location(latitude=row.latitude, longitude=row.longitude, address=row.address)
        grid = None
        if row.feeder is not None or row.transformer is not None or row.substation is not None:
            grid = GridPosition(feeder=row.feeder, transformer=row.transformer, substation=row.substation)
        return cls(
            identification=row.identification, device_type=row.device_type, protocol=row.protocol,
            protocol_version=row.protocol_version, concentrator_id=row.concentrator_id,
            model=row.model, firmware_version=row.firmware_version, location=location, grid=grid,
            payload_format=row.payload_format, payload_time_zone=row.payload_time_zone,
            state=row.state, last_seen=row.last_seen, comm_success_count=row.comm_success_count,
            comm_failure_count=row.comm_failure_count, consecutive_failures=row.consecutive_failures,
            last_failure_at=row.last_failure_at, last_failure_reason=row.last_failure_reason,
            created_at=row.created_at, updated_at=row.updated_at,
        )


class OrganisationCreate(_Schema):
    """An organisation to add."""

    identification: Identification
    name: str = Field(min_length=1, max_length=255)
    enabled: StrictBool = True
    role: PlatformRole = PlatformRole.USER
    webhook_url: AnyHttpUrl | None = None
    webhook_secret: SecretStr | None = Field(default=None, min_length=16, max_length=255)


class OrganisationUpdate(_Schema):
    """A change to an organisation: only the fields given are changed."""

    name: str | None = Field(default=None, min_length=1, max_length=255)
    enabled: StrictBool | None = None
    role: PlatformRole | None = None
    webhook_url: AnyHttpUrl | None = None
    webhook_secret: SecretStr | None = Field(default=None, min_length=16, max_length=255)


class OrganisationPublic(_Schema):
    """An organisation as shown: the webhook secret is never shown, only whether one is set."""

    model_config = ConfigDict(extra="ignore")

    identification: str
    name: str
    enabled: bool
    role: PlatformRole
    webhook_url: str | None = None
    has_webhook_secret: bool = False
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: Organisation) -> OrganisationPublic:
        return cls(identification=row.identification, name=row.name, enabled=row.enabled, role=row.role,
                   webhook_url=row.webhook_url, has_webhook_secret=row.webhook_secret is not None,
                   created_at=row.created_at, updated_at=row.updated_at)


class AuthorisationGrant(_Schema):
    """A function group to hand to an organisation on a device."""

    organisation: Identification
    function_group: FunctionGroup


class AuthorisationPublic(_Schema):
    """One function group an organisation holds on a device."""

    device: str
    organisation: str
    function_group: FunctionGroup
    created_at: datetime

    @classmethod
    def of(cls, row: DeviceAuthorisation, *, device: str, organisation: str) -> AuthorisationPublic:
        return cls(device=device, organisation=organisation, function_group=row.function_group,
                   created_at=row.created_at)


@dataclass(frozen=True, slots=True)
class Route:
    """How the core reaches a device: through a concentrator, or directly when that is None."""

    device_id: str
    concentrator_id: str | None
    protocol: Protocol
    protocol_version: str | None


def reached_through(identification: str, device_type: str, concentrator_id: str | None) -> str | None:
    """The concentrator a command to a device goes through: a concentrator's own commands (its
    software update) go to its own subtree, ``concentrator/{id}/command``, which its broker
    account may read; a device under a concentrator's, through that one; else None (direct)."""
    if concentrator_id is None and device_type == DeviceType.CONCENTRATOR:
        return identification
    return concentrator_id
