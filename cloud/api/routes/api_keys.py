"""``/v1/organisations/{organisation}/apiKeys``: an organisation's API keys (create, list, revoke).

An organisation manages its own keys, a platform administrator anyone's, and only with a
credential that is not itself limited to function groups (a limited key cannot make a broader
one). A key's token is in the answer that makes it and nowhere else.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Path, Request, status

from cloud.api.deps import Caller
from cloud.api.errors import REFUSALS
from cloud.api.identity import current_scope
from cloud.registry import NotAuthorised, OrganisationPublic, PlatformRole
from cloud.registry.apikeys import ApiKeyCreate, ApiKeyIssued, ApiKeyPublic, ApiKeys
from cloud.registry.schemas import Identification

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/organisations/{organisation}/apiKeys", tags=["API keys"])

OrgPath = Annotated[Identification, Path(description="The organisation's identification")]
KeyPath = Annotated[str, Path(max_length=32, pattern=r"^[0-9a-f]+$", description="The key's id")]


def _keys(request: Request) -> ApiKeys:
    return ApiKeys(request.app.state.registry.engine, clock=request.app.state.clock)


def _may_manage(who: OrganisationPublic, organisation: str) -> None:
    if current_scope() is not None:
        raise NotAuthorised("API keys are managed with a credential not limited to function groups")
    if who.identification != organisation and who.role is not PlatformRole.ADMIN:
        raise NotAuthorised("an organisation manages only its own API keys (platform administrators: any)")


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ApiKeyIssued, responses=REFUSALS)
async def create_api_key(organisation: OrgPath, spec: ApiKeyCreate, request: Request, who: Caller) -> ApiKeyIssued:
    """Make a key; the answer's ``token`` is shown this once."""
    _may_manage(who, organisation)
    issued = await _keys(request).create(organisation, spec)
    log.info("%s made API key %s for %s", who.identification, issued.id, organisation)
    return issued


@router.get("", response_model=list[ApiKeyPublic], responses=REFUSALS)
async def list_api_keys(organisation: OrgPath, request: Request, who: Caller) -> list[ApiKeyPublic]:
    """The organisation's keys, revoked ones included, without their secrets."""
    _may_manage(who, organisation)
    return await _keys(request).list(organisation)


@router.delete("/{key_id}", response_model=ApiKeyPublic, responses=REFUSALS)
async def revoke_api_key(organisation: OrgPath, key_id: KeyPath, request: Request, who: Caller) -> ApiKeyPublic:
    """Revoke a key: every API process refuses it from the next request on."""
    _may_manage(who, organisation)
    revoked = await _keys(request).revoke(organisation, key_id)
    log.info("%s revoked API key %s of %s", who.identification, key_id, organisation)
    return revoked
