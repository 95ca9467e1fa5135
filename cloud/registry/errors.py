"""The registry's errors, each a kind of the error family (:mod:`broker.errors`), so the web
API maps them to HTTP once (``cloud/api/errors.py``) and callers catch them by meaning."""

from __future__ import annotations

from broker.errors import Conflict, Forbidden, GridwireError, NotFound, Unavailable


class RegistryError(GridwireError):
    """Base of everything the registry raises on purpose."""


class NotFoundError(RegistryError, NotFound):
    """Something named does not exist: the registry's one not-found."""


class DeviceNotFound(NotFoundError):
    def __init__(self, device: str) -> None:
        super().__init__(f"device {device!r} is not registered")
        self.device = device


class OrganisationNotFound(NotFoundError):
    def __init__(self, organisation: str) -> None:
        super().__init__(f"organisation {organisation!r} does not exist")
        self.organisation = organisation


class AlreadyExistsError(RegistryError, Conflict):
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


class ConflictError(RegistryError, Conflict):
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


class NotAuthorised(RegistryError, Forbidden):
    """The organisation may not do this: unregistered, disabled, not an administrator, or
    without the function group a device function needs. The message is the reason."""


class RegistryUnavailable(RegistryError, Unavailable):
    """The registry's database cannot be reached (stopped, restarting, the network) or has no
    connection free for now; trying again later may work. The message names no address."""
