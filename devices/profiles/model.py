"""DLMS meter profiles, defined (pydantic): what to read from a kind of meter and how it maps to OMDP.

These models are the one definition of a profile (the catalogue, the docs and every ProfileError's
wording come from them); :func:`devices.profiles.loader.load_profile` reads profiles with their
lean restatement (:mod:`devices.profiles.lean`) and comes here for the message of a refused one.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from devices.adapter_config import MeterClass, PropertyMapping
from devices.profiles.power_quality import PowerQualitySpec

_OBIS_RE = re.compile(r"^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}$")
_NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9._\-]*$"


def _check_obis(value: str, *, what: str) -> str:
    if not _OBIS_RE.match(value):
        raise ValueError(f"{what} {value!r} is not an OBIS code like 1.0.1.8.1.255")
    return value


class LoadProfileSpec(BaseModel):
    """The profile generic object holding interval readings, and its capture period."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)

    obis: str
    period_minutes: int = Field(default=15, alias="periodMinutes", ge=1, le=1440)

    @field_validator("obis")
    @classmethod
    def _obis(cls, value: str) -> str:
        return _check_obis(value, what="obis")


class MeterProfile(BaseModel):
    """What to read from one kind of DLMS meter and how each value maps to OMDP."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME_RE)
    description: str | None = None
    meter_class: MeterClass = Field(default="ELECTRICITY", alias="meterClass")
    clock_obis: str = Field(default="0.0.1.0.0.255", alias="clockObis")
    disconnect_obis: str | None = Field(default=None, alias="disconnectObis")
    registers: list[PropertyMapping] = Field(min_length=1)
    load_profile: LoadProfileSpec | None = Field(default=None, alias="loadProfile")
    power_quality: PowerQualitySpec | None = Field(default=None, alias="powerQuality")

    @field_validator("clock_obis", "disconnect_obis")
    @classmethod
    def _obis(cls, value: str | None) -> str | None:
        return None if value is None else _check_obis(value, what="OBIS code")

    @model_validator(mode="after")
    def _registers(self) -> MeterProfile:
        seen: set[str] = set()
        for index, mapping in enumerate(self.registers):
            _check_obis(mapping.source, what=f"registers.{index}.source")
            if mapping.source in seen:
                raise ValueError(f"registers: source {mapping.source!r} appears twice")
            seen.add(mapping.source)
        return self

    def mapping_for(self, obis: str) -> PropertyMapping | None:
        return next((m for m in self.registers if m.source == obis), None)
