"""Admin and installation web API of the registry (FastAPI routers; the app wires them in)."""

from cloud.api_admin.deps import current_org, get_registry
from cloud.api_admin.routes import admin_router, installation_router, router
from cloud.api_admin.provisioning import provisioning_router

router.include_router(provisioning_router)

__all__ = ["admin_router", "current_org", "get_registry", "installation_router", "provisioning_router", "router"]
