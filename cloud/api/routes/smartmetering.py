"""Smart metering web API: actual and periodic reads, disconnect/reconnect, time sync, firmware, alarms."""

from __future__ import annotations

from typing import Literal

from cryptography.hazmat.primitives.keywrap import aes_key_wrap
from fastapi import APIRouter, Request, status
from pydantic import BaseModel, ConfigDict, Field

from cloud.api.deps import SubmitterDep
from cloud.api.routes.results import add_results_route
from cloud.domains.schemas import Accepted
from cloud.domains.smartmetering.translator import DOMAIN, PeriodicReads, SynchronizeTime
from cloud.registry.secrets import CHANGEABLE_KEYS, DeviceSecrets

router = APIRouter(prefix="/v1/smartmetering", tags=["smart metering"])
_ACCEPTED = {"status_code": status.HTTP_202_ACCEPTED, "response_model": Accepted, "response_model_by_alias": True}


@router.post("/devices/{device_id}/actualReads", **_ACCEPTED)
async def actual_reads(device_id: str, submitter: SubmitterDep) -> Accepted:
    """Read the meter's registers now."""
    return await submitter.submit(DOMAIN, "actualReads", device_id, {})


@router.post("/devices/{device_id}/disconnect", **_ACCEPTED)
async def disconnect(device_id: str, submitter: SubmitterDep) -> Accepted:
    """Open the meter's breaker."""
    return await submitter.submit(DOMAIN, "disconnect", device_id, {})


@router.post("/devices/{device_id}/reconnect", **_ACCEPTED)
async def reconnect(device_id: str, submitter: SubmitterDep) -> Accepted:
    """Close the meter's breaker."""
    return await submitter.submit(DOMAIN, "reconnect", device_id, {})


@router.post("/devices/{device_id}/synchronizeTime", **_ACCEPTED)
async def synchronize_time(device_id: str, submitter: SubmitterDep, body: SynchronizeTime | None = None) -> Accepted:
    """Set the meter's clock (to ``time`` if given, else to the concentrator's clock)."""
    params = body.model_dump(mode="json", exclude_none=True) if body else {}
    return await submitter.submit(DOMAIN, "synchronizeTime", device_id, params)


@router.post("/devices/{device_id}/firmwareVersion", **_ACCEPTED)
async def firmware_version(device_id: str, submitter: SubmitterDep) -> Accepted:
    """Read the meter's firmware version."""
    return await submitter.submit(DOMAIN, "firmwareVersion", device_id, {})


@router.post("/devices/{device_id}/periodicReads", **_ACCEPTED)
async def periodic_reads(device_id: str, submitter: SubmitterDep, body: PeriodicReads) -> Accepted:
    """Read the meter's load profile between ``from`` and ``to`` (at most 31 days)."""
    return await submitter.submit(DOMAIN, "periodicReads", device_id, body.model_dump(mode="json", by_alias=True))


@router.post("/devices/{device_id}/alarms", **_ACCEPTED)
async def read_alarms(device_id: str, submitter: SubmitterDep) -> Accepted:
    """Read the meter's alarm register and standard event log."""
    return await submitter.submit(DOMAIN, "alarms", device_id, {})


class KeyChangeRequest(BaseModel):
    """Which of the meter's keys to replace (default: both)."""

    model_config = ConfigDict(extra="forbid")

    keys: list[Literal["authentication_key", "block_cipher_key"]] = Field(
        default_factory=lambda: list(CHANGEABLE_KEYS), min_length=1, max_length=2)


@router.post("/devices/{device_id}/keyChange", **_ACCEPTED, responses={
    409: {"description": "No sealing key, or the meter has no master key or no such key to change"}})
async def key_change(device_id: str, submitter: SubmitterDep, request: Request,
                     body: KeyChangeRequest | None = None) -> Accepted:
    """Replace the meter's HLS keys in two phases: the registry makes new keys and keeps them pending
    beside the active ones; the concentrator sets them on the meter and associates with them; only
    then are they active. Asked again while a change is pending, the same change is sent again, so
    one cut short converges. The keys travel wrapped with the meter's master key."""
    await submitter.authorise(DOMAIN, "keyChange", device_id)
    secrets = DeviceSecrets(submitter.registry.engine, getattr(request.app.state, "sealing", None))
    change_id, keys = await secrets.begin_change(device_id, tuple(dict.fromkeys(
        body.keys if body is not None else CHANGEABLE_KEYS)))
    master = bytes.fromhex(await secrets.reveal(device_id, "master_key"))
    wrapped = {name: aes_key_wrap(master, bytes.fromhex(key)).hex() for name, key in keys.items()}
    return await submitter.submit(DOMAIN, "keyChange", device_id, {"changeId": change_id, "keys": wrapped})


add_results_route(router, DOMAIN)
