"""Load and validate meter profiles (``devices/profiles/*.yaml``), with ``extends:`` inheritance.

A profile names the COSEM objects an adapter reads and maps each OBIS code to an OMDP
operational property (reusing :class:`devices.adapter_config.PropertyMapping`, ``source`` being
the OBIS code). A child profile inherits its parent's fields; its ``registers`` are merged
into the parent's by ``source`` (a child entry replaces the parent's entry for the same OBIS
code, new ones are appended). Errors name the file and the field.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from broker.errors import Invalid
from devices.adapter_config import MeterClass, PropertyMapping, describe_errors
from devices.profiles.power_quality import PowerQualitySpec

PROFILE_DIR = Path(__file__).resolve().parent
_OBIS_RE = re.compile(r"^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}$")
_NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9._\-]*$"


class ProfileError(Invalid):
    """A profile file that cannot be read, inherits in a loop, or is invalid (names file and field)."""


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


def load_profile(name: str, *, directory: Path | None = None) -> MeterProfile:
    """Load profile ``name`` (file ``<name>.yaml`` in ``directory``), resolving ``extends``."""
    directory = directory or PROFILE_DIR
    document, path = _resolve(name, directory, chain=())
    try:
        return MeterProfile.model_validate(document)
    except ValidationError as exc:
        raise ProfileError(describe_errors(path, exc)) from exc


def _read(name: str, directory: Path) -> tuple[dict[str, Any], Path]:
    if not re.match(_NAME_RE, name):
        raise ProfileError(f"profile name {name!r} is not a valid file name")
    path = directory / f"{name}.yaml"
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read profile {name!r}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(document, dict):
        raise ProfileError(f"{path}: the top level must be a mapping of fields")
    return document, path


def _resolve(name: str, directory: Path, *, chain: tuple[str, ...]) -> tuple[dict[str, Any], Path]:
    if name in chain:
        raise ProfileError(f"profile {name!r} extends itself: {' -> '.join((*chain, name))}")
    document, path = _read(name, directory)
    parent_name = document.pop("extends", None)
    if parent_name is None:
        return document, path
    if not isinstance(parent_name, str):
        raise ProfileError(f"{path}: extends: must be a profile name")
    parent, _ = _resolve(parent_name, directory, chain=(*chain, name))
    return _merge(parent, document), path


def _merge(parent: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    merged = {**parent, **child}
    if "registers" in parent and "registers" in child:
        if not isinstance(child["registers"], list) or not isinstance(parent["registers"], list):
            return merged  # let validation report the wrong type, with the child's file
        by_source: dict[Any, Any] = {}
        for entry in [*parent["registers"], *child["registers"]]:
            key = entry.get("source") if isinstance(entry, dict) else id(entry)
            by_source[key] = entry
        merged["registers"] = list(by_source.values())
    return merged
