"""Build ``cloud/catalogue/data`` from the OMDP reference files and Gridwire's own adapter data.

Run once when the reference or an adapter map changes, and commit the output::

    python -m cloud.catalogue.build path/to/reference/omdp

It reads ``energy.json`` and ``water.json`` (operational properties) and the two example
readings (meter types), applies :mod:`cloud.catalogue.amendments`, adds the meter types our
own adapters read (the P1 default mapping, ``devices/profiles``, ``devices/modbus/maps``), and
writes ``operational_properties.json``, ``physical_meter_elements.json`` and corrected copies
of the examples under ``examples/``. The result is validated by loading it as a Catalogue.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import re
import uuid
from pathlib import Path
from typing import Any

from broker.schemas import MeterReading
from cloud.catalogue import amendments
from cloud.catalogue.catalogue import DATA_DIR, ELEMENTS_FILE, PROPERTIES_FILE, load_catalogue
from devices.modbus import available_maps, load_map
from devices.p1 import DEFAULT_P1_PROPERTIES
from devices.profiles.loader import PROFILE_DIR, load_profile

log = logging.getLogger(__name__)

# Every catalogue id derived here is uuid5 of this namespace and a name, so a rebuild gives the same ids.
CATALOGUE_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:gridwire:omdp:catalogue")
GRIDWIRE_VERSION = "1"

_NUMERIC_OBIS = re.compile(r"^OBIS_(\d+)\.(\d+)\.(\d+)$")
# DSMR's power-failure counter is the catalogue's power-down counter (devices/p1.py).
_SPECIAL_SOURCES: dict[str, dict[str, str]] = {
    "OBIS_C.7.0": {"p1": "0-0:96.7.21", "dlms": "0.0.96.7.21.255"},
}


def element_id(name: str, version: str) -> uuid.UUID:
    """The id of a meter type: the same name and version always give the same valid UUID."""
    return uuid.uuid5(CATALOGUE_NAMESPACE, f"physicalMeterElement/{name}/{version}")


def meter_individual_id(example_id: str) -> uuid.UUID:
    """A valid UUID standing in for an example's invalid meterIndividualId."""
    return uuid.uuid5(CATALOGUE_NAMESPACE, f"meterIndividual/{example_id}")


def obis_sources(property_id: str) -> dict[str, str]:
    """Where P1 and DLMS read an electricity OBIS property, derived from its id."""
    if property_id in _SPECIAL_SOURCES:
        return dict(_SPECIAL_SOURCES[property_id])
    m = _NUMERIC_OBIS.match(property_id)
    if m is None:
        return {}
    c, d, e = m.groups()
    return {"p1": f"1-0:{c}.{d}.{e}", "dlms": f"1.0.{c}.{d}.{e}.255"}


# --- operational properties -------------------------------------------------------------------


def omdp_properties(document: dict[str, Any], *, origin: str, meter_class: str) -> list[dict[str, Any]]:
    """The properties of an OMDP catalogue file with its defects resolved (headings dropped,
    malformed ids fixed, missing units and value types filled in, alternatives added)."""
    out: list[dict[str, Any]] = []
    for raw in document["properties"]:
        pid = raw["id"]
        if amendments.HEADING_RE.match(pid) and "description" not in raw:
            log.info("dropping section heading stored as a property: %r", pid)
            continue
        pid = amendments.FIXED_IDS.get(pid, pid)
        description = " ".join(raw["description"].split())
        if pid in amendments.FIXED_DESCRIPTIONS:
            wrong, right = amendments.FIXED_DESCRIPTIONS[pid]
            description = description.replace(wrong, right)
        units = tuple(raw.get("allowedUnits", ())) or amendments.INFERRED_UNITS.get(pid, ())
        units = tuple(dict.fromkeys(u for unit in units for u in (unit, *amendments.UNIT_ALTERNATIVES.get(unit, ()))))
        text = pid in amendments.TEXT_PROPERTIES or description.lower().endswith("timestamp")
        out.append({"propertyId": pid, "propertyDescription": description,
                    "allowedUnits": [] if text else list(units), "valueType": "text" if text else "number",
                    "meterClasses": [meter_class], "origin": origin})
    return out


# --- meter types -------------------------------------------------------------------------------


def _element(*, name: str, version: str, meter_class: str, description: str | None, origin: str,
             properties: list[dict[str, Any]]) -> dict[str, Any]:
    return {"physicalElementId": str(element_id(name, version)), "physicalElementName": name,
            "physicalElementVersionId": version, "physicalElementIsVirtual": False,
            "physicalMeterClass": meter_class, "description": description, "origin": origin,
            "physicalMeterOperationalProperties": properties}


def _element_property(pid: str, unit: str | None, *, sources: dict[str, str], value_type: str = "number",
                      description: str | None = None, scale: float | None = None) -> dict[str, Any]:
    record: dict[str, Any] = {"propertyId": pid, "unit": unit, "valueType": value_type, "sources": sources}
    if description:
        record["propertyDescription"] = description
    if scale is not None:
        record["scale"] = scale
    return record


def _meter_type_of(example: dict[str, Any]) -> dict[str, Any]:
    individual = example["meterIndividual"]
    return individual.get("physicalMeterType") or individual["physicalMeter"]


def example_element(example: dict[str, Any], *, description: str, catalogue: dict[str, dict[str, Any]]) -> dict:
    """The meter type an OMDP example reading names, with a valid id and catalogue units."""
    meter_type = _meter_type_of(example)
    properties = []
    for value in example["propertyValues"]:
        pid = value["operationalPropertyDefinition"]["propertyId"]
        units = catalogue[pid]["allowedUnits"]
        # OBIS_15.7.0 is given kWh in the example: an energy unit for a power; use the catalogue's.
        unit = value.get("unit") if value.get("unit") in units else (units[0] if units else None)
        properties.append(_element_property(pid, unit, sources=obis_sources(pid),
                                            description=catalogue[pid]["propertyDescription"]))
    return _element(name=meter_type["physicalElementName"], version=meter_type["physicalElementVersionId"],
                    meter_class=meter_type["physicalMeterClass"], description=description,
                    origin="OMDP example", properties=properties)


def corrected_example(example: dict[str, Any], *, element: dict[str, Any]) -> dict[str, Any]:
    """An OMDP example reading with every known defect fixed; it validates against the catalogue."""
    fixed = copy.deepcopy(example)
    individual = fixed["meterIndividual"]
    individual["meterIndividualId"] = str(meter_individual_id(individual["meterIndividualId"]))
    meter_type = individual.pop("physicalMeter", None) or individual.pop("physicalMeterType")
    meter_type["physicalElementId"] = element["physicalElementId"]
    individual["physicalMeterType"] = meter_type
    units = {p["propertyId"]: p["unit"] for p in element["physicalMeterOperationalProperties"]}
    for value in fixed["propertyValues"]:
        definition = value["operationalPropertyDefinition"]
        if "propertyName" in definition:
            definition["propertyDescription"] = definition.pop("propertyName")
        value["unit"] = units[definition["propertyId"]]
        definition["allowedUnits"] = [value["unit"]]
    reading = MeterReading.model_validate({**fixed, "meterReadingIdentifier": str(uuid.UUID(int=0))})
    fixed["meterReadingIdentifier"] = str(MeterReading.derive_id(reading.meter_id, reading.reading_time))
    return fixed


def adapter_elements() -> list[dict[str, Any]]:
    """The meter types Gridwire's own adapters read: P1 default, DLMS profiles, Modbus maps."""
    out = [_element(
        name="DSMR 5 electricity meter", version=GRIDWIRE_VERSION, meter_class="ELECTRICITY", origin="Gridwire",
        description="Dutch DSMR 5 meter read on its P1 port (or over DLMS); Gridwire's default P1 mapping",
        properties=[_element_property(m.property_id, m.unit, sources={**obis_sources(m.property_id), "p1": m.source},
                                      value_type=m.value_type, description=m.description, scale=m.scale)
                    for m in DEFAULT_P1_PROPERTIES])]
    for path in sorted(PROFILE_DIR.glob("*.yaml")):
        profile = load_profile(path.stem)
        out.append(_element(
            name=profile.name, version=GRIDWIRE_VERSION, meter_class=profile.meter_class, origin="Gridwire",
            description=f"{profile.description} (DLMS profile devices/profiles/{path.name})",
            properties=[_element_property(r.property_id, r.unit, sources={"dlms": r.source}, value_type=r.value_type,
                                          description=r.description, scale=r.scale) for r in profile.registers]))
    for name in available_maps():
        register_map = load_map(name)
        out.append(_element(
            name=register_map.name, version=GRIDWIRE_VERSION, meter_class=register_map.meter_class,
            origin="Gridwire", description=f"{register_map.description} (Modbus map devices/modbus/maps/{name}.yaml)",
            properties=[_element_property(p.property_id, None if p.states else p.unit, sources={"modbus": p.name},
                                          value_type="text" if p.states else "number", description=p.description)
                        for p in register_map.points]))
    return out


def build(reference: Path, output: Path = DATA_DIR) -> None:
    """Write the catalogue data under ``output`` from the OMDP files in ``reference``."""
    def read(name: str) -> dict[str, Any]:
        return json.loads((reference / name).read_text(encoding="utf-8"))

    properties = [*omdp_properties(read("energy.json"), origin="OMDP energy.json", meter_class="ELECTRICITY"),
                  *omdp_properties(read("water.json"), origin="OMDP water.json", meter_class="WATER"),
                  *amendments.ADDED_PROPERTIES]
    by_id = {p["propertyId"]: p for p in properties}
    elements, examples = [], {}
    for spec in amendments.OMDP_EXAMPLE_ELEMENTS:
        example = read(spec["file"])
        element = example_element(example, description=spec["description"], catalogue=by_id)
        elements.append(element)
        examples[spec["file"]] = corrected_example(example, element=element)
    elements.extend(adapter_elements())
    for spec in amendments.ADDED_ELEMENTS:
        elements.append(_element(
            name=spec["name"], version=GRIDWIRE_VERSION, meter_class=spec["class"], description=spec["description"],
            origin="Gridwire",
            properties=[_element_property(pid, unit, sources={}) for pid, unit in spec["properties"]]))

    (output / "examples").mkdir(parents=True, exist_ok=True)
    _write(output / PROPERTIES_FILE, properties)
    _write(output / ELEMENTS_FILE, elements)
    for name, example in examples.items():
        _write(output / "examples" / name, example)
    catalogue = load_catalogue(output)  # refuses inconsistent data before anyone commits it
    log.info("wrote %d properties and %d meter types to %s", len(catalogue), len(catalogue.elements()), output)


def _write(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference", type=Path, help="the OMDP reference directory (energy.json, water.json, ...)")
    parser.add_argument("--output", type=Path, default=DATA_DIR)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    build(args.reference, args.output)


if __name__ == "__main__":
    main()
