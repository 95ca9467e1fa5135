"""The OMDP catalogue: operational property definitions and physical meter elements, as data."""

from cloud.catalogue.catalogue import Catalogue, CatalogueError, default_catalogue, load_catalogue
from cloud.catalogue.models import (
    METER_CLASSES,
    PROTOCOLS,
    ElementProperty,
    MeterClass,
    OperationalPropertyDefinition,
    PhysicalMeterElement,
    Protocol,
)

__all__ = [
    "METER_CLASSES", "PROTOCOLS", "Catalogue", "CatalogueError", "ElementProperty", "MeterClass",
    "OperationalPropertyDefinition", "PhysicalMeterElement", "Protocol", "default_catalogue", "load_catalogue",
]
