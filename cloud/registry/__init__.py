"""The device registry: devices, organisations and their authorisations per function group."""

from cloud.registry.enums import DeviceType, LifecycleState, PayloadFormat, PlatformRole, Protocol
from cloud.registry.errors import (
    AlreadyExistsError,
    AuthorisationExists,
    ConflictError,
    DeviceDecommissioned,
    DeviceExists,
    DeviceNotFound,
    InvalidChange,
    InvalidStateChange,
    NotAuthorised,
    NotFoundError,
    OrganisationExists,
    OrganisationNotFound,
    RegistryError,
)
from cloud.registry.functions import Decision, DeviceFunction, FunctionGroup, authorise, groups_allowing, is_allowed
from cloud.registry.repository import METER_DATA_GROUPS, Registry
from cloud.registry.schemas import (
    AuthorisationGrant,
    AuthorisationPublic,
    DeviceBase,
    DeviceCreate,
    DevicePublic,
    DeviceUpdate,
    GridPosition,
    Location,
    OrganisationCreate,
    OrganisationPublic,
    OrganisationUpdate,
    Route,
)

__all__ = [
    "METER_DATA_GROUPS", "AlreadyExistsError", "AuthorisationExists", "AuthorisationGrant",
    "AuthorisationPublic", "ConflictError", "Decision", "DeviceBase", "DeviceCreate",
    "DeviceDecommissioned", "DeviceExists", "DeviceFunction", "DeviceNotFound", "DevicePublic",
    "DeviceType", "DeviceUpdate", "FunctionGroup", "GridPosition", "InvalidChange",
    "InvalidStateChange", "LifecycleState", "PayloadFormat", "Location", "NotAuthorised", "NotFoundError", "OrganisationCreate",
    "OrganisationExists", "OrganisationNotFound", "OrganisationPublic", "OrganisationUpdate",
    "PlatformRole", "Protocol", "Registry", "RegistryError", "Route", "authorise", "groups_allowing",
    "is_allowed",
]
