"""``POST /v1/physicalMeterElements/{id}/meterIndividuals``: the adapter config file for a new meter.

OMDP asks for an endpoint that creates the SmartMeterAdapter config file for a new
MeterIndividual of an existing PhysicalMeterElement. The file is generated, not stored: the
cloud keeps no record of it (registering the device is the registry's job).
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Response, status
from pydantic import BaseModel, ConfigDict, Field

from cloud.api.deps import CatalogueDep, PrincipalDep
from cloud.api.routes.catalogue import element_or_404
from cloud.catalogue import Protocol
from cloud.catalogue.adapter_file import MEDIA_TYPES, adapter_config, render

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["catalogue"])

METER_ID_HEADER = "X-Meter-Individual-Id"
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]")


class MeterIndividualCreate(BaseModel):
    """What the caller says about the new meter; everything is optional."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    # Same rule as the broker schema: it becomes a topic level.
    meter_individual_id: str | None = Field(default=None, alias="meterIndividualId", min_length=1, max_length=128,
                                            pattern=r"^[^/+#\x00$\s][^/+#\x00\s]*$")
    household_id: str | None = Field(default=None, alias="householdId", min_length=1, max_length=128,
                                     pattern=r"^[^\r\n\x00]+$")
    protocol: Protocol | None = None
    format: Literal["yaml", "toml"] = "yaml"


@router.post("/physicalMeterElements/{element_id}/meterIndividuals", status_code=status.HTTP_201_CREATED,
             response_class=Response,
             responses={201: {"description": "the adapter config file",
                              "content": {"application/yaml": {}, "application/toml": {}}},
                        401: {"description": "no or invalid bearer token"},
                        404: {"description": "unknown physical meter element"},
                        422: {"description": "bad input, or the protocol cannot read this meter type"}})
async def create_meter_individual_config(
        element_id: uuid.UUID, catalogue: CatalogueDep, who: PrincipalDep,
        spec: Annotated[MeterIndividualCreate | None, Body()] = None) -> Response:
    """The SmartMeterAdapter config file (attachment) for a new meter of this type; a
    meterIndividualId is generated (UUID 4) when none is given."""
    spec = spec or MeterIndividualCreate()
    element = element_or_404(catalogue, element_id)
    meter_id = spec.meter_individual_id or str(uuid.uuid4())
    config = adapter_config(element, meter_individual_id=meter_id, protocol=spec.protocol)  # AdapterFileError: 422
    text = render(config, file_format=spec.format, household_id=spec.household_id)
    log.info("%s (%s) created an adapter config for meter %s of %s", who.subject, who.org, meter_id,
             element.physical_element_name)
    filename = f"{_UNSAFE_FILENAME.sub('_', meter_id)}.{spec.format}"
    return Response(content=text, status_code=status.HTTP_201_CREATED, media_type=MEDIA_TYPES[spec.format],
                    headers={"Content-Disposition": f'attachment; filename="{filename}"', METER_ID_HEADER: meter_id})
