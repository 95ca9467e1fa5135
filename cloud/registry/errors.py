"""The registry's exceptions: one hierarchy, so callers map them to HTTP or MQTT reasons once."""

from __future__ import annotations


class RegistryError(Exception):
    """Base of everything the registry raises on purpose."""


class NotFoundError(RegistryError):
    """Something named does not exist."""


class DeviceNotFound(NotFoundError):
    def __init__(self, device: str) -> None:
        super().__init__(f"device {device!r} is not registered")
        self.device = device


class OrganisationNotFound(NotFoundError):
    def __init__(self, organisation: str) -> None:
        super().__init__(f"organisation {organisation!r} does not exist")
        self.organisation = organisation


class AlreadyExistsError(RegistryError):
    """Creating something that is already there."""


class DeviceExists(AlreadyExistsError):
    def __init__(self, device: str) -> None:
        super().__init__(f"device {device!r} is already registered")
        self.device = device


class OrganisationExists(AlreadyExistsError):
    def __init__(self, organisation: str) -> None:
        super().__init__(f"organisation {organisation!r} already exists")
        self.organisation = organisation


class AuthorisationExists(AlreadyExistsError):
    def __init__(self, device: str, organisation: str, group: str) -> None:
        super().__init__(f"organisation {organisation!r} already holds {group} on device {device!r}")


class ConflictError(RegistryError):
    """A change the device's current state does not allow."""


class DeviceDecommissioned(ConflictError):
    def __init__(self, device: str) -> None:
        super().__init__(f"device {device!r} is decommissioned")
        self.device = device


class InvalidChange(ConflictError):
    """A change that is well-formed but not possible for this device."""


class InvalidStateChange(InvalidChange):
    def __init__(self, device: str, current: str, target: str) -> None:
        super().__init__(f"device {device!r} cannot go from {current} to {target} by an update")
