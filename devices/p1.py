"""The default P1 (DSMR) property mappings: what a P1 adapter config without
``operationalProperties`` publishes, for the electricity meter and its M-Bus sub-meters.

``source`` is the telegram's OBIS reference (``1-0:1.8.1``); for a sub-meter it is relative
to the channel (``24.2.1``). The edge's P1 mapper (``edge/p1/mapping.py``) reads them, and the
cloud's catalogue lists them as a meter type.
"""

from __future__ import annotations

from devices.adapter_config import PropertyMapping


def _obis(source: str, unit: str | None, description: str) -> PropertyMapping:
    code = source.split(":", 1)[1]
    return PropertyMapping(source=source, propertyId=f"OBIS_{code}", unit=unit, description=description)


# What a DSMR electricity meter publishes when the config names no operationalProperties (what a
# telegram lacks is skipped, so one list serves every version).
DEFAULT_P1_PROPERTIES: tuple[PropertyMapping, ...] = (
    _obis("1-0:1.8.1", "kWh", "Positive active energy (A+) in tariff T1"),
    _obis("1-0:1.8.2", "kWh", "Positive active energy (A+) in tariff T2"),
    _obis("1-0:2.8.1", "kWh", "Negative active energy (A-) in tariff T1"),
    _obis("1-0:2.8.2", "kWh", "Negative active energy (A-) in tariff T2"),
    _obis("1-0:1.7.0", "kW", "Positive active instantaneous power (A+)"),
    _obis("1-0:2.7.0", "kW", "Negative active instantaneous power (A-)"),
    *(_obis(f"1-0:{c}.7.0", "kW", f"Positive active instantaneous power (A+) in phase L{i}")
      for i, c in enumerate((21, 41, 61), start=1)),
    *(_obis(f"1-0:{c}.7.0", "kW", f"Negative active instantaneous power (A-) in phase L{i}")
      for i, c in enumerate((22, 42, 62), start=1)),
    *(_obis(f"1-0:{c}.7.0", "V", f"Instantaneous voltage (U) in phase L{i}")
      for i, c in enumerate((32, 52, 72), start=1)),
    *(_obis(f"1-0:{c}.7.0", "A", f"Instantaneous current (I) in phase L{i}")
      for i, c in enumerate((31, 51, 71), start=1)),
    # DSMR's "number of power failures in any phase" is the catalogue's power-down counter.
    PropertyMapping(source="0-0:96.7.21", propertyId="OBIS_C.7.0", description="Event power down - counter"),
    # Totals: the Luxembourg Smarty sends these instead of the tariff registers.
    _obis("1-0:1.8.0", "kWh", "Positive active energy (A+) total"),
    _obis("1-0:2.8.0", "kWh", "Negative active energy (A-) total"),
)

# What an M-Bus sub-meter publishes by default; sources are relative to its channel.
DEFAULT_MBUS_PROPERTIES: dict[str, tuple[PropertyMapping, ...]] = {
    "GAS": (PropertyMapping(source="24.2.1", propertyId="OBIS_24.2.1", unit="m3",
                            description="Gas delivered to client"),),
    "WATER": (PropertyMapping(source="24.2.1", propertyId="OBIS_24.2.1", unit="m3",
                              description="Water delivered to client"),),
    "HEAT": (PropertyMapping(source="24.2.1", propertyId="OBIS_24.2.1", unit="GJ",
                             description="Heat delivered to client"),),
}
