"""Every functional domain the platform serves, by name."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from cloud.domains.base import Domain
from cloud.domains.loadcontrol.translator import DOMAIN as LOAD_CONTROL
from cloud.domains.powerquality.translator import DOMAIN as POWER_QUALITY
from cloud.domains.publiclighting.translator import DOMAIN as PUBLIC_LIGHTING
from cloud.domains.smartmetering.translator import DOMAIN as SMART_METERING
from cloud.domains.tariffswitching.translator import DOMAIN as TARIFF_SWITCHING

DOMAINS: Mapping[str, Domain] = MappingProxyType({d.name: d for d in (PUBLIC_LIGHTING, SMART_METERING,
                                                                     TARIFF_SWITCHING, LOAD_CONTROL,
                                                                     POWER_QUALITY)})

