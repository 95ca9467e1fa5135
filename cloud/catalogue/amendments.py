"""What Gridwire changes in and adds to the OMDP catalogue, as data the build script applies.

Each entry here is explained in ``docs/OMDP.md``. Kept apart from :mod:`cloud.catalogue.build`
so the decisions can be read without the file handling around them.
"""

from __future__ import annotations

import re
from typing import Any

# Malformed ids in energy.json and what they are, by their descriptions.
FIXED_IDS: dict[str, str] = {"OBIS_16.8.": "OBIS_16.8.1"}

# Description typos in energy.json: the OBIS C-group says which energy direction it is.
FIXED_DESCRIPTIONS: dict[str, tuple[str, str]] = {
    **{f"OBIS_2.8.{t}": ("(A+)", "(A-)") for t in range(5)},
    **{f"OBIS_15.8.{t}": ("(A+)", "(|A|)") for t in range(5)},
}

# A heading stored as a property: an id with a space in it and no description.
HEADING_RE = re.compile(r"^OBIS_\d+\.\s")

# Prefixed SI units of the same quantity, accepted after the unit OMDP names: DLMS meters
# report W and Wh with scaler 0, and every PropertyValue carries its own unit.
UNIT_ALTERNATIVES: dict[str, tuple[str, ...]] = {
    "kWh": ("Wh", "MWh"), "kW": ("W",), "kvarh": ("varh",), "kvar": ("var",), "kVAh": ("VAh",),
    "kVA": ("VA",), "degreeCelsius": ("Cel",), "GJ": ("MJ", "kWh", "MWh"),
}

# OMDP properties given without units whose values are text (times, versions, codes).
TEXT_PROPERTIES: frozenset[str] = frozenset({
    "OBIS_0.9.1", "OBIS_0.9.2", "OBIS_0.9.4", "OBIS_0.0.0", "OBIS_0.0.1", "OBIS_0.2.0", "OBIS_0.2.1", "OBIS_0.2.2",
    "OBIS_C.1.0", "OBIS_C.1.2", "OBIS_C.1.4", "OBIS_C.1.5", "OBIS_C.1.6", "OBIS_F.F.0",
})

# OMDP properties given without units that have one (Gridwire's choice, named in the doc).
INFERRED_UNITS: dict[str, tuple[str, ...]] = {
    **{f"OBIS_C.53.{n}": ("kWh",) for n in (1, 2, 3, 4, 11)},
    **{f"OBIS_C.53.{n}": ("s",) for n in (5, 6, 7, 9, 10)},
    "OBIS_C.6.0": ("s",),
    "OBIS_C.6.1": ("%",),
    "OBIS_0.3.0": ("imp/kWh",),
}

_ELECTRICITY = ("ELECTRICITY",)
_MBUS = ("GAS", "WATER", "HEAT")


def _prop(pid: str, description: str, units: tuple[str, ...] = (), *, value_type: str = "number",
          classes: tuple[str, ...] = _ELECTRICITY, note: str | None = None) -> dict[str, Any]:
    record: dict[str, Any] = {"propertyId": pid, "propertyDescription": description, "allowedUnits": list(units),
                              "valueType": value_type, "meterClasses": list(classes), "origin": "Gridwire"}
    if note:
        record["note"] = note
    return record


# Properties OMDP lacks that DSMR meters and Gridwire's own adapters publish.
ADDED_PROPERTIES: tuple[dict[str, Any], ...] = (
    _prop("OBIS_24.2.1", "Value of an M-Bus device (gas, water or heat meter) at its capture time",
          ("m3", "GJ", "MJ", "kWh", "MWh"), classes=_MBUS,
          note="DSMR 0-n:24.2.1: m3 for gas and water, GJ (or kWh) for heat"),
    _prop("HEAT_heat_energy", "heat energy delivered", ("GJ", "MJ", "kWh", "MWh"), classes=("HEAT",)),
    _prop("HEAT_heat_power", "heat power", ("kW", "W"), classes=("HEAT",)),
    _prop("HEAT_volume_of_water", "volume of heating water passed", ("m3",), classes=("HEAT",)),
    _prop("HEAT_flow_rate", "heating water flow rate", ("m3/h",), classes=("HEAT",)),
    _prop("HEAT_flow_temperature", "flow (supply) temperature", ("degreeCelsius", "Cel"), classes=("HEAT",)),
    _prop("HEAT_return_temperature", "return temperature", ("degreeCelsius", "Cel"), classes=("HEAT",)),
    _prop("WATER_flow_rate", "water flow rate", ("m3/h",), classes=("WATER",)),
    _prop("GAS_volume_of_gas", "volume of gas delivered (meters read directly, not through M-Bus)", ("m3",),
          classes=("GAS",)),
    *(_prop(f"GW_relay.{n}.command", f"Relay {n} commanded state (1 closed, 0 open)") for n in range(1, 5)),
    *(_prop(f"GW_relay.{n}.state", f"Relay {n} contact state as read back (1 closed, 0 open)")
      for n in range(1, 5)),
    _prop("GW_relay.switchDelay", "Delay before a relay switch is carried out", ("s",)),
    _prop("GW_inverter.status", "Inverter operating state (OFF, STARTING, MPPT, THROTTLED, FAULT, UNKNOWN(n))",
          value_type="text"),
    _prop("GW_inverter.temperature", "Inverter internal temperature", ("degreeCelsius", "Cel")),
    _prop("GW_inverter.dcPower", "Inverter DC input power", ("kW", "W")),
    _prop("GW_inverter.activePowerLimit", "Inverter active power limit, share of rated power", ("%",)),
)

# The meter types of the OMDP examples, with the element ids they lacked (see the doc).
OMDP_EXAMPLE_ELEMENTS: tuple[dict[str, Any], ...] = (
    {"file": "electricalSmartMeter.json", "description": "Three-phase electricity meter of the OMDP example"},
    {"file": "waterSmartMeter.json", "description": "Household water meter of the OMDP example"},
)

# Meter types OMDP lacks that Gridwire serves: M-Bus devices behind a DSMR meter and heat meters.
ADDED_ELEMENTS: tuple[dict[str, Any], ...] = (
    {"name": "DSMR gas meter (M-Bus)", "class": "GAS", "description": "Gas meter read through a DSMR meter's "
     "M-Bus channel; configure it as a subMeter of the electricity meter's adapter",
     "properties": [("OBIS_24.2.1", "m3")]},
    {"name": "DSMR water meter (M-Bus)", "class": "WATER", "description": "Water meter read through a DSMR "
     "meter's M-Bus channel; configure it as a subMeter", "properties": [("OBIS_24.2.1", "m3")]},
    {"name": "Heat meter", "class": "HEAT", "description": "District-heating meter (energy, flow and return)",
     "properties": [("HEAT_heat_energy", "GJ"), ("HEAT_flow_temperature", "degreeCelsius"),
                    ("HEAT_return_temperature", "degreeCelsius"), ("HEAT_volume_of_water", "m3")]},
)
