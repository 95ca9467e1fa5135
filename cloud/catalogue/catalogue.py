"""The OMDP catalogue loaded from ``cloud/catalogue/data``: lookups and the check of a reading.

Pure: the data is read once from files shipped with the package; nothing here does I/O after
:func:`load_catalogue` returns. Regenerate the data with ``python -m cloud.catalogue.build``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from functools import cache
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from broker.errors import Invalid
from broker.schemas import MeterReading, PropertyValue
from cloud.catalogue.models import MeterClass, OperationalPropertyDefinition, PhysicalMeterElement

DATA_DIR = Path(__file__).resolve().parent / "data"
PROPERTIES_FILE = "operational_properties.json"
ELEMENTS_FILE = "physical_meter_elements.json"

_PROPERTIES = TypeAdapter(list[OperationalPropertyDefinition])
_ELEMENTS = TypeAdapter(list[PhysicalMeterElement])

# How many problems of one reading a check names before it stops (a reason is for a person).
_MAX_PROBLEMS = 3


class CatalogueError(Invalid):
    """Catalogue data that cannot be read or is inconsistent; the message names file and record."""


class Catalogue:
    """Operational property definitions and physical meter elements, by id."""

    def __init__(self, *, properties: Iterable[OperationalPropertyDefinition],
                 elements: Iterable[PhysicalMeterElement]) -> None:
        self._properties: dict[str, OperationalPropertyDefinition] = {}
        for definition in properties:
            if definition.property_id in self._properties:
                raise CatalogueError(f"property {definition.property_id!r} is defined twice")
            self._properties[definition.property_id] = definition
        self._elements: dict[uuid.UUID, PhysicalMeterElement] = {}
        for element in elements:
            if element.physical_element_id in self._elements:
                raise CatalogueError(f"element id {element.physical_element_id} is used twice")
            for prop in element.operational_properties:
                self._check_element_property(element, prop.property_id, prop.unit, prop.value_type)
            self._elements[element.physical_element_id] = element

    def _check_element_property(self, element: PhysicalMeterElement, pid: str, unit: str | None,
                                value_type: str) -> None:
        where = f"element {element.physical_element_name!r}: property {pid!r}"
        definition = self._properties.get(pid)
        if definition is None:
            raise CatalogueError(f"{where} is not in the catalogue")
        if element.physical_meter_class not in definition.meter_classes:
            raise CatalogueError(f"{where} is not one of a {element.physical_meter_class} meter's")
        if value_type != definition.value_type:
            raise CatalogueError(f"{where} is {definition.value_type}, not {value_type}")
        if unit is not None and unit not in definition.allowed_units:
            raise CatalogueError(f"{where}: unit {unit!r} is not one of {list(definition.allowed_units)}")

    # --- lookups ----------------------------------------------------------------------------

    def property(self, property_id: str) -> OperationalPropertyDefinition | None:
        return self._properties.get(property_id)

    def properties(self, *, meter_class: MeterClass | None = None) -> list[OperationalPropertyDefinition]:
        return [d for d in self._properties.values() if meter_class is None or meter_class in d.meter_classes]

    def element(self, element_id: uuid.UUID | str) -> PhysicalMeterElement | None:
        try:
            key = element_id if isinstance(element_id, uuid.UUID) else uuid.UUID(element_id)
        except ValueError:
            return None
        return self._elements.get(key)

    def elements(self, *, meter_class: MeterClass | None = None) -> list[PhysicalMeterElement]:
        return [e for e in self._elements.values() if meter_class is None or e.physical_meter_class == meter_class]

    def __contains__(self, property_id: object) -> bool:
        return property_id in self._properties

    def __len__(self) -> int:
        return len(self._properties)

    # --- checks -----------------------------------------------------------------------------

    def check_value(self, value: PropertyValue, *, meter_class: MeterClass | None = None) -> str | None:
        """Why ``value`` does not fit its property's definition, or None if it does."""
        pid = value.property_id
        definition = self._properties.get(pid)
        if definition is None:
            return f"unknown operational property {pid!r}"
        if meter_class is not None and meter_class not in definition.meter_classes:
            return f"{pid} is not a property of a {meter_class} meter (only {', '.join(definition.meter_classes)})"
        if definition.value_type == "number":
            if value.numerical_value is None:
                return f"{pid} takes a numericalValue, not a textValue"
            if definition.allowed_units and value.unit not in definition.allowed_units:
                allowed = ", ".join(definition.allowed_units)
                given = "no unit" if value.unit is None else f"unit {value.unit!r}"
                return f"{given} is not allowed for {pid} (allowed: {allowed})"
            if not definition.allowed_units and value.unit is not None:
                return f"{pid} has no unit, but {value.unit!r} was given"
        else:
            if value.text_value is None:
                return f"{pid} takes a textValue, not a numericalValue"
            if value.unit is not None:
                return f"{pid} is text and has no unit, but {value.unit!r} was given"
        return None

    def allows(self, property_id: str, unit: str | None, is_text: bool, meter_class: str | None) -> bool:
        """The same verdict as :meth:`check_value`, from the four facts it depends on (the
        ingest fast path asks this without building models; answers are cached there)."""
        definition = self._properties.get(property_id)
        if definition is None:
            return False
        if meter_class is not None and meter_class not in definition.meter_classes:
            return False
        if definition.value_type == "number":
            if is_text:
                return False
            return unit in definition.allowed_units if definition.allowed_units else unit is None
        return is_text and unit is None

    def check(self, reading: MeterReading) -> str | None:
        """Why ``reading`` does not fit the catalogue (unknown property, unit not allowed, text for
        a number, property of another meter class), or None if it does."""
        physical = reading.meter_individual.physical_meter_type
        meter_class = physical.physical_meter_class if physical is not None else None
        problems = [p for p in (self.check_value(v, meter_class=meter_class) for v in reading.property_values) if p]
        if not problems:
            return None
        more = f" (+{len(problems) - _MAX_PROBLEMS} more)" if len(problems) > _MAX_PROBLEMS else ""
        return "; ".join(problems[:_MAX_PROBLEMS]) + more


def load_catalogue(directory: Path | None = None) -> Catalogue:
    """Read the catalogue from ``directory`` (default: the data shipped with Gridwire)."""
    directory = directory or DATA_DIR
    return Catalogue(properties=_read(directory / PROPERTIES_FILE, _PROPERTIES),
                     elements=_read(directory / ELEMENTS_FILE, _ELEMENTS))


@cache
def default_catalogue() -> Catalogue:
    """The shipped catalogue, read once per process."""
    return load_catalogue()


def _read(path: Path, adapter: TypeAdapter) -> list:
    try:
        return adapter.validate_python(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CatalogueError(f"{path}: cannot read: {exc}") from exc
    except ValidationError as exc:
        raise CatalogueError(f"{path}: {exc}") from exc
