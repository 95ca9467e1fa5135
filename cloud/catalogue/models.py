"""The OMDP catalogue's records: operational property definitions and physical meter elements.

Field names are the OMDP data model's (camelCase on the wire). ``docs/OMDP.md`` says where the
OMDP material was inconsistent and how each record here resolves it.
"""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, computed_field, model_validator

from devices.adapter_config import MeterClass

ValueType = Literal["number", "text"]
Protocol = Literal["p1", "dlms", "modbus"]
METER_CLASSES: tuple[MeterClass, ...] = ("ELECTRICITY", "GAS", "WATER", "HEAT")
PROTOCOLS: tuple[Protocol, ...] = ("p1", "dlms", "modbus")

# A property id as the broker schema and the adapter config accept it.
PROPERTY_ID_PATTERN = r"^[A-Za-z][\w.\-]*$"


class _Record(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)


class OperationalPropertyDefinition(_Record):
    """What one operational property is: its id, meaning, units, value type and meter classes."""

    property_id: str = Field(alias="propertyId", min_length=1, max_length=128, pattern=PROPERTY_ID_PATTERN)
    property_description: str = Field(
        alias="propertyDescription", min_length=1,
        validation_alias=AliasChoices("propertyDescription", "propertyName"))
    # The first unit is the one OMDP names (or Gridwire chose); others are accepted alternatives
    # of the same quantity. Empty: the value has no unit (counters, ratios, text).
    allowed_units: tuple[str, ...] = Field(default=(), alias="allowedUnits")
    value_type: ValueType = Field(default="number", alias="valueType")
    meter_classes: tuple[MeterClass, ...] = Field(alias="meterClasses", min_length=1)
    # Where the definition comes from: "OMDP energy.json", "OMDP water.json" or "Gridwire".
    origin: str
    note: str | None = None

    @model_validator(mode="after")
    def _text_has_no_unit(self) -> OperationalPropertyDefinition:
        if self.value_type == "text" and self.allowed_units:
            raise ValueError(f"{self.property_id}: a text property has no units")
        return self

    @property
    def preferred_unit(self) -> str | None:
        return self.allowed_units[0] if self.allowed_units else None


class ElementProperty(_Record):
    """One operational property of a meter type, with the unit it publishes and where each
    protocol reads it (an OBIS code for P1 and DLMS, a register name for Modbus)."""

    property_id: str = Field(alias="propertyId", min_length=1, max_length=128, pattern=PROPERTY_ID_PATTERN)
    property_description: str | None = Field(
        default=None, alias="propertyDescription",
        validation_alias=AliasChoices("propertyDescription", "propertyName"))
    unit: str | None = None
    value_type: ValueType = Field(default="number", alias="valueType")
    scale: float | None = Field(default=None, allow_inf_nan=False)
    sources: dict[Protocol, str] = Field(default_factory=dict)


class PhysicalMeterElement(_Record):
    """A meter type (OMDP PhysicalMeterElement): id, name, version, class and its properties."""

    physical_element_id: uuid.UUID = Field(alias="physicalElementId")
    physical_element_name: str = Field(alias="physicalElementName", min_length=1, max_length=128)
    physical_element_version_id: str = Field(alias="physicalElementVersionId", min_length=1, max_length=64)
    physical_element_is_virtual: bool = Field(default=False, alias="physicalElementIsVirtual")
    physical_meter_class: MeterClass = Field(alias="physicalMeterClass")
    description: str | None = None
    origin: str
    operational_properties: tuple[ElementProperty, ...] = Field(
        alias="physicalMeterOperationalProperties", min_length=1)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def protocols(self) -> tuple[Protocol, ...]:
        """The protocols that can read every property of this meter type."""
        return tuple(p for p in PROTOCOLS if all(p in prop.sources for prop in self.operational_properties))
