"""``/v1/installation/devices/{device}/secrets``: a device's DLMS keys and passwords, written
sealed and listed without their values (OWNER only: UPDATE_KEY).

The values go in and never come out: a listing says which key sealed each secret and whether a
key change is pending. 409 when the platform has no sealing key (GRIDWIRE_SECRETS_KEY).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import Field, SecretStr

from cloud.api.deps import Caller, RegistryDep, require
from cloud.api.errors import REFUSALS
from cloud.registry import DeviceFunction
from cloud.registry.schemas import _Schema
from cloud.registry.secrets import DeviceSecrets, SecretPublic

router = APIRouter(prefix="/v1/installation", tags=["installation"])


class SecretValue(_Schema):
    """A secret's new value: a key as 32 hex digits, or a password."""

    value: SecretStr = Field(min_length=1, max_length=256)


def device_secrets(request: Request) -> DeviceSecrets:
    return DeviceSecrets(request.app.state.registry.engine, request.app.state.sealing,
                         clock=request.app.state.clock)


SecretsDep = Annotated[DeviceSecrets, Depends(device_secrets)]
_WRITE_REFUSALS = {**REFUSALS, 409: {"description": "No sealing key configured, or a key change is pending"},
                   422: {"description": "Unknown secret name or a malformed value"}}


@router.get("/devices/{device}/secrets", response_model=list[SecretPublic], responses=REFUSALS)
async def list_secrets(device: str, registry: RegistryDep, secrets: SecretsDep, who: Caller) -> list[SecretPublic]:
    """The device's secrets: names, the sealing key's id, any pending key change; never a value."""
    await require(registry, who, device, DeviceFunction.UPDATE_KEY)
    return await secrets.list(device)


@router.put("/devices/{device}/secrets/{name}", response_model=SecretPublic, responses=_WRITE_REFUSALS)
async def set_secret(device: str, name: str, body: SecretValue, registry: RegistryDep, secrets: SecretsDep,
                     who: Caller) -> SecretPublic:
    """Store a secret (authentication_key, block_cipher_key, master_key or password), sealed."""
    await require(registry, who, device, DeviceFunction.UPDATE_KEY)
    return await secrets.set(device, name, body.value.get_secret_value())
