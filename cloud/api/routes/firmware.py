"""Web API of firmware OTA (``/v1/firmware``, ``/v1/campaigns``): the operator side.

Uploading firmware is for platform administrators; the image is checked against its signed
manifest (trusted key, signature, size, sha256) before anything is stored. Campaigns are
created by an organisation for devices it holds the FIRMWARE function group on; it (or a
platform administrator) sees and controls them. Refusals say why: 400 for an image or
signature that does not verify, 403 for missing rights, 404 for unknown ids, 409 for a
duplicate firmware id with another image or an action the campaign's state does not allow,
422 for targets that cannot take the firmware.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Literal, get_args

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from broker.errors import Forbidden
from broker.schemas.firmware import MAX_IMAGE_BYTES, SignedManifest
from cloud.api.deps import (
    MAX_OFFSET,
    Admin,
    Caller,
    CampaignsDep,
    FirmwareCatalogueDep,
    SettingsDep,
)
from cloud.firmware.schemas import (
    CampaignCreate,
    CampaignPublic,
    CampaignStatus,
    FirmwarePublic,
    TargetPublic,
)
from cloud.api.identity import check_scope
from cloud.registry import DeviceFunction, OrganisationPublic, PlatformRole
from firmware_ota.campaign_logic import TargetState
from firmware_ota.errors import CampaignNotFound
from firmware_ota.signing import SignatureError, load_trusted_keys
from firmware_ota.store import FirmwareExists, FirmwareStore, ImageRejected

log = logging.getLogger(__name__)

router = APIRouter(tags=["firmware"])


class FirmwareUpload(BaseModel):
    """A firmware image (base64) and the manifest an offline key signed for it."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    signed_manifest: SignedManifest
    image_base64: str = Field(max_length=(MAX_IMAGE_BYTES // 3 + 1) * 4)


# --- firmware ------------------------------------------------------------------------------------


@router.post("/v1/firmware", status_code=status.HTTP_201_CREATED, response_model=FirmwarePublic, responses={
    400: {"description": "Bad base64, unknown signing key, bad signature, size or sha256 mismatch"},
    403: {"description": "Not a platform administrator"},
    409: {"description": "The firmware id exists with another image or manifest"}})
async def upload_firmware(upload: FirmwareUpload, settings: SettingsDep, catalogue: FirmwareCatalogueDep,
                          admin: Admin) -> FirmwarePublic:
    """Add a signed firmware image to the repository (verified before it is stored)."""
    try:
        image = base64.b64decode(upload.image_base64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "imageBase64 is not valid base64") from exc
    try:
        trusted = load_trusted_keys(settings.firmware.trusted_key_paths())
    except (OSError, ValueError) as exc:
        log.error("trusted firmware keys cannot be read: %s", exc)
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the trusted firmware keys cannot be read") from exc
    store = FirmwareStore(root=settings.firmware.store_dir)
    firmware_id = upload.signed_manifest.manifest.firmware_id
    try:
        stored = store.add(image=image, signed=upload.signed_manifest, trusted=trusted)
    except (SignatureError, ImageRejected, FirmwareExists) as exc:  # 400, 400, 409 by the error table
        log.warning("firmware %s refused: %s", firmware_id, exc)
        raise
    return await catalogue.record(stored, uploaded_by=admin.identification)


@router.get("/v1/firmware", response_model=list[FirmwarePublic])
async def list_firmware(catalogue: FirmwareCatalogueDep, _who: Caller) -> list[FirmwarePublic]:
    """Every firmware in the repository."""
    return await catalogue.list()


@router.get("/v1/firmware/{firmware_id}", response_model=FirmwarePublic, responses={404: {"description": "Unknown"}})
async def get_firmware(firmware_id: str, catalogue: FirmwareCatalogueDep, _who: Caller) -> FirmwarePublic:
    return await catalogue.get(firmware_id)


# --- campaigns -----------------------------------------------------------------------------------


def _visible(campaign: CampaignPublic, who: OrganisationPublic) -> None:
    if who.role is not PlatformRole.ADMIN and campaign.organisation != who.identification:
        raise CampaignNotFound(campaign.id)  # another's campaign is reported as unknown


@router.post("/v1/campaigns", status_code=status.HTTP_201_CREATED, response_model=CampaignPublic, responses={
    403: {"description": "The caller may not update some named devices"},
    404: {"description": "Unknown firmware"},
    422: {"description": "Devices unknown, decommissioned or of a model the firmware does not fit"}})
async def create_campaign(spec: CampaignCreate, campaigns: CampaignsDep, who: Caller) -> CampaignPublic:
    """Create a campaign (and start it if ``start``); its waves are planned now."""
    check_scope(DeviceFunction.UPDATE_FIRMWARE)
    if spec.all_devices_of is not None and spec.all_devices_of != who.identification \
            and who.role is not PlatformRole.ADMIN:
        raise Forbidden("allDevicesOf may name only the calling organisation")
    return await campaigns.create(spec, organisation=who.identification)


@router.get("/v1/campaigns", response_model=list[CampaignPublic])
async def list_campaigns(campaigns: CampaignsDep, who: Caller) -> list[CampaignPublic]:
    """The caller's campaigns (every campaign for a platform administrator)."""
    return await campaigns.list(organisation=None if who.role is PlatformRole.ADMIN else who.identification)


@router.get("/v1/campaigns/{campaign_id}", response_model=CampaignPublic, responses={404: {"description": "Unknown"}})
async def get_campaign(campaign_id: str, campaigns: CampaignsDep, who: Caller) -> CampaignPublic:
    found = await campaigns.public(campaign_id)
    _visible(found, who)
    return found


@router.get("/v1/campaigns/{campaign_id}/status", response_model=CampaignStatus,
            responses={404: {"description": "Unknown"}})
async def campaign_status(campaign_id: str, campaigns: CampaignsDep, who: Caller) -> CampaignStatus:
    """Counts per target state, overall and per wave, and the failed devices with their reasons
    (the first 1,000; all of them, a page at a time, from ``/targets?state=FAILED``)."""
    found = await campaigns.status(campaign_id)
    _visible(found.campaign, who)
    return found


@router.get("/v1/campaigns/{campaign_id}/targets", response_model=list[TargetPublic],
            responses={404: {"description": "Unknown"}})
async def campaign_targets(campaign_id: str, campaigns: CampaignsDep, who: Caller,
                           state: Annotated[TargetState | None, Query(description="Only devices in this state")] = None,
                           page: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Page number, from 0")] = 0,
                           page_size: Annotated[int, Query(alias="pageSize", ge=1, le=10_000)] = 1000,
                           ) -> list[TargetPublic]:
    """The campaign's devices, a page at a time (by wave, then device), with each one's state,
    attempts, command and failure: every failed device, however many, with ``state=FAILED``."""
    _visible(await campaigns.public(campaign_id), who)
    return await campaigns.targets(campaign_id, state=state, page=page, page_size=page_size)


CampaignAction = Literal["start", "pause", "resume", "cancel"]


async def control_campaign(campaign_id: str, action: CampaignAction, campaigns: CampaignsDep,
                           who: Caller) -> CampaignPublic:
    """Start, pause, resume or cancel. Cancel stops new commands; those in flight finish and are recorded."""
    check_scope(DeviceFunction.UPDATE_FIRMWARE)
    _visible(await campaigns.public(campaign_id), who)
    return await campaigns.control(campaign_id, action)


def _control(action: CampaignAction) -> Callable[..., Awaitable[CampaignPublic]]:
    async def control(campaign_id: str, campaigns: CampaignsDep, who: Caller) -> CampaignPublic:
        return await control_campaign(campaign_id, action, campaigns, who)

    control.__doc__ = f"{action.capitalize()} the campaign. {control_campaign.__doc__}"
    return control


# One path per action: another word after the campaign (status, targets) is another resource,
# answered 405 for a method it does not take, not 422.
for _action in get_args(CampaignAction):
    router.add_api_route(f"/v1/campaigns/{{campaign_id}}/{_action}", _control(_action), methods=["POST"],
                         name=f"{_action}_campaign", response_model=CampaignPublic, responses={
                             404: {"description": "Unknown"},
                             409: {"description": "The campaign's state does not allow it"}})
