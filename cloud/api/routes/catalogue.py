"""The read-only OMDP catalogue: ``/v1/operationalProperties`` and ``/v1/physicalMeterElements``."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status

from cloud.api.deps import CatalogueDep, PrincipalDep
from cloud.catalogue import Catalogue, MeterClass, OperationalPropertyDefinition, PhysicalMeterElement

router = APIRouter(prefix="/v1", tags=["catalogue"])

_ERRORS: dict[int | str, dict[str, str]] = {
    401: {"description": "no or invalid bearer token"},
    404: {"description": "no such catalogue entry"},
}


MeterClassQuery = Annotated[MeterClass | None, Query(alias="meterClass", description="only this meter class")]


@router.get("/operationalProperties", response_model=list[OperationalPropertyDefinition], responses=_ERRORS)
async def list_operational_properties(catalogue: CatalogueDep, _who: PrincipalDep,
                                      meter_class: MeterClassQuery = None) -> list[OperationalPropertyDefinition]:
    """Every operational property definition (id, description, allowed units, value type)."""
    return catalogue.properties(meter_class=meter_class)


@router.get("/operationalProperties/{property_id}", response_model=OperationalPropertyDefinition,
            responses=_ERRORS)
async def get_operational_property(property_id: str, catalogue: CatalogueDep,
                                   _who: PrincipalDep) -> OperationalPropertyDefinition:
    """One operational property definition; 404 if the catalogue has no such id."""
    definition = catalogue.property(property_id)
    if definition is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown operational property {property_id!r}")
    return definition


@router.get("/physicalMeterElements", response_model=list[PhysicalMeterElement], responses=_ERRORS)
async def list_physical_meter_elements(catalogue: CatalogueDep, _who: PrincipalDep,
                                       meter_class: MeterClassQuery = None) -> list[PhysicalMeterElement]:
    """Every meter type with its operational properties and the protocols that read them."""
    return catalogue.elements(meter_class=meter_class)


@router.get("/physicalMeterElements/{element_id}", response_model=PhysicalMeterElement, responses=_ERRORS)
async def get_physical_meter_element(element_id: uuid.UUID, catalogue: CatalogueDep,
                                     _who: PrincipalDep) -> PhysicalMeterElement:
    """One meter type; 404 if unknown, 422 if the id is not a UUID."""
    return element_or_404(catalogue, element_id)


def element_or_404(catalogue: Catalogue, element_id: uuid.UUID) -> PhysicalMeterElement:
    element = catalogue.element(element_id)
    if element is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown physical meter element {element_id}")
    return element
