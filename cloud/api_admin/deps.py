"""Dependencies of the admin and installation routers: the registry and the calling organisation.

``current_org`` is the seam for authentication: the app overrides it with the JWT check
(``app.dependency_overrides[current_org] = jwt_organisation``) so it returns the calling
organisation's identification. Until then it refuses every request (fail closed). What an
organisation may do is decided here, from the registry, not from the token.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from cloud.registry import DeviceFunction, OrganisationNotFound, OrganisationPublic, PlatformRole, Registry

log = logging.getLogger(__name__)


def get_registry(request: Request) -> Registry:
    """The registry the app put in ``app.state.registry`` (built in its lifespan)."""
    registry = getattr(request.app.state, "registry", None)
    if registry is None:
        raise RuntimeError("app.state.registry is not set; build the Registry in the app's lifespan")
    return registry


async def current_org() -> str:
    """The calling organisation's identification. Override this with real authentication."""
    raise HTTPException(status.HTTP_401_UNAUTHORIZED, "no authentication configured",
                        headers={"WWW-Authenticate": "Bearer"})


RegistryDep = Annotated[Registry, Depends(get_registry)]
OrgId = Annotated[str, Depends(current_org)]


async def caller(registry: RegistryDep, org: OrgId) -> OrganisationPublic:
    """The calling organisation as registered; 403 if it is unknown or disabled."""
    try:
        found = await registry.get_organisation(org)
    except OrganisationNotFound:
        log.warning("request from unregistered organisation %r refused", org)
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"organisation {org!r} is not registered") from None
    if not found.enabled:
        log.warning("request from disabled organisation %r refused", org)
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"organisation {org!r} is disabled")
    return found


Caller = Annotated[OrganisationPublic, Depends(caller)]


async def platform_admin(who: Caller) -> OrganisationPublic:
    """The caller, if it is a platform administrator; 403 otherwise."""
    if who.role is not PlatformRole.ADMIN:
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            f"organisation {who.identification!r} is not a platform administrator")
    return who


Admin = Annotated[OrganisationPublic, Depends(platform_admin)]


async def require(registry: Registry, who: OrganisationPublic, device: str, function: DeviceFunction) -> None:
    """Raise 404 if ``device`` is unknown, 403 with the reason if ``who`` may not do ``function``."""
    await registry.get_device(device)  # DeviceNotFound -> 404 in the route's error mapping
    decision = await registry.permission(who.identification, device, function)
    if not decision.allowed:
        log.warning("refused %s on %s for %s: %s", function, device, who.identification, decision.reason)
        raise HTTPException(status.HTTP_403_FORBIDDEN, decision.reason)
