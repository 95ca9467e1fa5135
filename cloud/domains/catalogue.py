"""Every functional domain the platform serves, by name."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from cloud.domains.base import Domain
from cloud.domains.publiclighting.translator import DOMAIN as PUBLIC_LIGHTING
from cloud.domains.smartmetering.translator import DOMAIN as SMART_METERING
from cloud.domains.tariffswitching.translator import DOMAIN as TARIFF_SWITCHING

DOMAINS: Mapping[str, Domain] = MappingProxyType({d.name: d for d in (PUBLIC_LIGHTING, SMART_METERING,
                                                                     TARIFF_SWITCHING)})


def routers() -> list:  # noqa: ANN201 - APIRouter list; imported lazily so the consumer needs no FastAPI app
    """The web routers of every domain, for the app to include."""
    from cloud.domains.publiclighting.router import router as publiclighting
    from cloud.domains.smartmetering.router import router as smartmetering
    from cloud.domains.tariffswitching.router import router as tariffswitching
    return [publiclighting, smartmetering, tariffswitching]
