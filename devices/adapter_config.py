"""The OMDP SmartMeterAdapterConfig: which meter an adapter speaks for and how its values map.

OMDP says an adapter is set up from a config file that names the MeterIndividualId and the
operational-property mapping; this is that file, as YAML (``.yaml``/``.yml``) or TOML
(``.toml``). Keys are camelCase as in the OMDP data model; snake_case is accepted too.

Example (YAML)::

    meterIndividualId: 0b6f2c8e-1d3a-4c5b-9e7f-2a1b3c4d5e6f
    physicalElementId: 5f0c7e2a-9b1d-4e3f-8a6c-7d2e1f0a9b8c
    physicalMeterClass: ELECTRICITY
    protocol: p1
    operationalProperties:
      - {source: "1-0:1.8.1", propertyId: OBIS_1.8.1, unit: kWh}
      - {source: "1-0:1.7.0", propertyId: OBIS_1.7.0, unit: W, scale: 1000}
    subMeters:
      - {channel: 1, meterIndividualId: 9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d, physicalMeterClass: GAS}

``source`` is the protocol's own key (an OBIS code for P1 and DLMS, a register name for
Modbus), so DLMS and Modbus adapters reuse :class:`PropertyMapping` unchanged. Omitting
``operationalProperties`` means the protocol's default mapping.

What OMDP's adapter config lacks, and where it lives instead: the concentrator id and the
broker (address, TLS, credentials) are NOT in this file. They belong to the concentrator's
own config, because one concentrator serves many adapters and the adapter must not need to
know where its data goes (OMDP: the concentrator forwards adapter messages unmodified).
"""

from __future__ import annotations

import tomllib
import uuid
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from broker.errors import Invalid
from broker.lean import MeterIndividual, PhysicalMeterType

MeterClass = Literal["ELECTRICITY", "GAS", "WATER", "HEAT"]


class AdapterConfigError(Invalid):
    """An adapter config file that cannot be read or is invalid; the message names file and field."""


class _Config(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)


class PropertyMapping(_Config):
    """How one source value becomes an OMDP PropertyValue: property id, unit, optional scale."""

    source: str = Field(min_length=1, max_length=128)
    property_id: str = Field(alias="propertyId", min_length=1, max_length=128, pattern=r"^[A-Za-z][\w.\-]*$")
    # None: publish the unit the source gives.
    unit: str | None = Field(default=None, max_length=32)
    # Multiplies the source value (e.g. 1000 for kW -> W); None leaves it as it is.
    scale: float | None = Field(default=None, allow_inf_nan=False)
    value_type: Literal["number", "text"] = Field(default="number", alias="valueType")
    description: str | None = Field(default=None, max_length=256)

    @model_validator(mode="after")
    def _scale_is_for_numbers(self) -> PropertyMapping:
        if self.scale is not None and self.value_type == "text":
            raise ValueError("scale applies to numbers only, not valueType text")
        if self.scale == 0:
            raise ValueError("scale must not be 0")
        return self


def _unique(mappings: list[PropertyMapping], *, what: str) -> None:
    for attr in ("source", "property_id"):
        seen: set[str] = set()
        for m in mappings:
            key = getattr(m, attr)
            if key in seen:
                raise ValueError(f"{what}: {attr.replace('_id', 'Id')} {key!r} appears twice")
            seen.add(key)


class SubMeterConfig(_Config):
    """A meter read through this one (an M-Bus gas or water meter on channel 1..4)."""

    channel: int = Field(ge=1, le=4)
    meter_individual_id: str = Field(alias="meterIndividualId", min_length=1, max_length=128,
                                     pattern=r"^[^/+#\x00]+$")
    physical_element_id: uuid.UUID | None = Field(default=None, alias="physicalElementId")
    physical_meter_class: MeterClass = Field(default="GAS", alias="physicalMeterClass")
    # Keys are relative to the channel (``24.2.1``); None means the protocol's default.
    operational_properties: list[PropertyMapping] | None = Field(default=None, alias="operationalProperties")

    @model_validator(mode="after")
    def _no_duplicates(self) -> SubMeterConfig:
        _unique(self.operational_properties or [], what="operationalProperties")
        return self

    def meter_individual(self) -> MeterIndividual:
        return _individual(self.meter_individual_id, self.physical_element_id, None, self.physical_meter_class)


class SmartMeterAdapterConfig(_Config):
    """One adapter's config: the MeterIndividual it speaks for and its operational-property mapping."""

    meter_individual_id: str = Field(alias="meterIndividualId", min_length=1, max_length=128,
                                     pattern=r"^[^/+#\x00]+$")
    physical_element_id: uuid.UUID | None = Field(default=None, alias="physicalElementId")
    physical_element_name: str | None = Field(default=None, alias="physicalElementName", max_length=128)
    physical_meter_class: MeterClass = Field(default="ELECTRICITY", alias="physicalMeterClass")
    protocol: Literal["p1", "dlms", "modbus"] = "p1"
    operational_properties: list[PropertyMapping] | None = Field(default=None, alias="operationalProperties")
    sub_meters: list[SubMeterConfig] = Field(default_factory=list, alias="subMeters")

    @model_validator(mode="after")
    def _no_duplicates(self) -> SmartMeterAdapterConfig:
        _unique(self.operational_properties or [], what="operationalProperties")
        channels = [s.channel for s in self.sub_meters]
        if len(channels) != len(set(channels)):
            raise ValueError("subMeters: a channel appears twice")
        ids = [self.meter_individual_id, *(s.meter_individual_id for s in self.sub_meters)]
        if len(ids) != len(set(ids)):
            raise ValueError("subMeters: a meterIndividualId is used twice")
        return self

    def meter_individual(self) -> MeterIndividual:
        """The OMDP MeterIndividual this adapter adds to every reading of the main meter."""
        return _individual(self.meter_individual_id, self.physical_element_id, self.physical_element_name,
                           self.physical_meter_class)

    def sub_meter(self, channel: int) -> SubMeterConfig | None:
        return next((s for s in self.sub_meters if s.channel == channel), None)

    def to_yaml(self) -> str:
        """The config as a YAML document, e.g. for the cloud endpoint that writes new adapter files."""
        data = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        return yaml.safe_dump(data, sort_keys=False)


# The name the concentrator and the other adapters use.
AdapterConfig = SmartMeterAdapterConfig


def _individual(meter_id: str, element_id: uuid.UUID | None, name: str | None, meter_class: str) -> MeterIndividual:
    return MeterIndividual(
        meterIndividualId=meter_id,
        physicalMeterType=PhysicalMeterType(
            physicalElementId=element_id, physicalElementName=name, physicalMeterClass=meter_class
        ),
    )


def load_adapter_config(path: str | Path) -> SmartMeterAdapterConfig:
    """Read and validate an adapter config file; raise AdapterConfigError naming file and field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AdapterConfigError(f"{path}: cannot read: {exc}") from exc
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            document = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            document = yaml.safe_load(text)
        else:
            raise AdapterConfigError(f"{path}: unknown config format {suffix!r}; use .yaml, .yml or .toml")
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise AdapterConfigError(f"{path}: not valid {suffix[1:].upper()}: {exc}") from exc
    if not isinstance(document, dict):
        raise AdapterConfigError(f"{path}: the top level must be a mapping of fields")
    return parse_adapter_config(document, source=str(path))


def describe_errors(source: object, exc: ValidationError) -> str:
    """One line per problem: ``<file>: <field path>: <message>`` (shared by the device description loaders)."""
    return "\n".join(f"{source}: {'.'.join(str(part) for part in error['loc']) or '(top level)'}: {error['msg']}"
                     for error in exc.errors())


def parse_adapter_config(document: dict, *, source: str = "<config>") -> SmartMeterAdapterConfig:
    """Validate an already-loaded config document; ``source`` names it in error messages."""
    try:
        return SmartMeterAdapterConfig.model_validate(document)
    except ValidationError as exc:
        raise AdapterConfigError(describe_errors(source, exc)) from exc
