"""Every property our own adapters emit is in the catalogue, with a unit it allows.

Loads every Modbus register map, every DLMS meter profile and the P1 default mappings shipped
in the repo, so a new map with an unknown id or a wrong unit fails here, not at ingest.
"""

from __future__ import annotations

from cloud.catalogue import default_catalogue
from devices.adapter_config import PropertyMapping
from devices.modbus.register_map import available_maps, load_map
from devices.p1 import DEFAULT_MBUS_PROPERTIES, DEFAULT_P1_PROPERTIES
from devices.profiles.loader import PROFILE_DIR, load_profile


def problem(pid: str, unit: str | None, value_type: str, meter_class: str) -> str | None:
    definition = default_catalogue().property(pid)
    if definition is None:
        return f"{pid} is not in the catalogue"
    if meter_class not in definition.meter_classes:
        return f"{pid} is not a {meter_class} property"
    if value_type != definition.value_type:
        return f"{pid} is {definition.value_type}, the adapter sends {value_type}"
    if value_type == "number" and unit is not None and unit not in definition.allowed_units:
        return f"{pid}: unit {unit!r} not in {definition.allowed_units}"
    if value_type == "number" and unit is None and definition.allowed_units:
        return f"{pid}: the adapter sends no unit, the catalogue wants one of {definition.allowed_units}"
    return None


def mapping_problem(m: PropertyMapping, meter_class: str) -> str | None:
    return problem(m.property_id, m.unit, m.value_type, meter_class)


def test_modbus_maps() -> None:
    names = available_maps()
    assert {"solar-inverter", "load-control-relay"} <= set(names)
    found = []
    for name in names:
        register_map = load_map(name)
        for point in register_map.points:
            value_type = "text" if point.states is not None else "number"
            unit = None if point.states is not None else point.unit
            found.append(problem(point.property_id, unit, value_type, register_map.meter_class))
    assert [p for p in found if p] == []
    assert len(found) >= 19


def test_dlms_profiles() -> None:
    paths = sorted(PROFILE_DIR.glob("*.yaml"))
    assert len(paths) >= 2
    found = []
    for path in paths:
        profile = load_profile(path.stem)
        found += [mapping_problem(r, profile.meter_class) for r in profile.registers]
    assert [p for p in found if p] == []


def test_p1_default_mappings() -> None:
    found = [mapping_problem(m, "ELECTRICITY") for m in DEFAULT_P1_PROPERTIES]
    for meter_class, mappings in DEFAULT_MBUS_PROPERTIES.items():
        found += [mapping_problem(m, meter_class) for m in mappings]
    assert [p for p in found if p] == []
    assert len(found) == len(DEFAULT_P1_PROPERTIES) + 3


def test_the_check_itself_catches_a_wrong_unit_and_an_unknown_id() -> None:
    assert "not in" in problem("OBIS_1.8.1", "kW", "number", "ELECTRICITY")
    assert "not in the catalogue" in problem("GW_nope", None, "number", "ELECTRICITY")
    assert "text" in problem("GW_inverter.status", None, "number", "ELECTRICITY")
