"""The one error family every Gridwire package builds on.

Each package (``broker``, ``devices``, ``edge``, ``cloud``) raises its own errors, and each
of them derives from one of the kinds below, so a caller can catch by meaning and the web API
maps every kind to one HTTP status in one table (``cloud/api/errors.py``):

| kind          | means                                               | HTTP |
|---------------|-----------------------------------------------------|------|
| ``NotFound``     | the thing named does not exist                   | 404  |
| ``Conflict``     | it exists, but its state forbids the change      | 409  |
| ``Forbidden``    | the caller may not do this                       | 403  |
| ``Invalid``      | the input can never be valid as given            | 422  |
| ``Unavailable``  | a collaborator is down or busy; trying later may work | 503 |

The kinds also derive from the built-in exception a Python reader would expect
(``LookupError``, ``ValueError``, ``PermissionError``), so ``except ValueError`` around a parse
still catches an ``Invalid``.
"""

from __future__ import annotations


class GridwireError(Exception):
    """Root of every error Gridwire raises on purpose."""


class NotFound(GridwireError, LookupError):
    """The device, organisation, campaign, image or other thing named does not exist."""


class Conflict(GridwireError):
    """The thing exists, but its current state does not allow what was asked."""


class Forbidden(GridwireError, PermissionError):
    """The caller is not allowed to do this."""


class Invalid(GridwireError, ValueError):
    """The input can never be valid as given (a malformed payload, a bad config value)."""


class Unavailable(GridwireError):
    """A collaborator (broker, database, meter, InfluxDB) is unreachable or busy for now."""


__all__ = ["Conflict", "Forbidden", "GridwireError", "Invalid", "NotFound", "Unavailable"]
