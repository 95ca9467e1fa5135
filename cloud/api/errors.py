"""The web API's one mapping from the error family (:mod:`broker.errors`) to HTTP.

:func:`install_error_table` (called by :func:`cloud.api.app.create_app`) registers one handler
for :class:`~broker.errors.GridwireError`; it answers with the status of the first class in the
error's MRO that :data:`STATUS` names, and ``{"detail": <reason>}``. The reason is the error's
message, or what its ``public_detail()`` returns when it has one: a structured detail (the
devices refused, each with why), or a message without internals (a store's address).
Routes raise the errors and no longer map them; ``HTTPException`` stays for what is HTTP's
own (401 with ``WWW-Authenticate``, 410 for an expired link).

The registry's database is the one collaborator reached through a third-party error family
(SQLAlchemy's): a second handler turns a database that cannot be reached (stopped, restarting,
the network, :func:`cloud.registry.db.unreachable`) or that has no pooled connection free into
:class:`~cloud.registry.errors.RegistryUnavailable`, answered as any ``Unavailable``: 503 with
``Retry-After``. Any other database error is a bug and stays a 500.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import MappingProxyType

from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc

from broker.errors import (
    Conflict,
    Forbidden,
    GridwireError,
    Invalid,
    NotFound,
    Unavailable,
)
from cloud.registry.db import unreachable
from cloud.registry.errors import RegistryUnavailable
from cloud.store import StoreRejected
from firmware_ota.signing import SignatureError
from firmware_ota.store import ImageRejected

log = logging.getLogger(__name__)

STATUS: Mapping[type[GridwireError], int] = MappingProxyType({
    # Input the API could not check against its schema and that does not verify: 400, as
    # these answers were documented before the table.
    StoreRejected: status.HTTP_400_BAD_REQUEST,
    SignatureError: status.HTTP_400_BAD_REQUEST,
    ImageRejected: status.HTTP_400_BAD_REQUEST,
    # The kinds.
    NotFound: status.HTTP_404_NOT_FOUND,
    Conflict: status.HTTP_409_CONFLICT,
    Forbidden: status.HTTP_403_FORBIDDEN,
    Invalid: 422,  # Starlette renamed the constant; the number is what clients see
    Unavailable: status.HTTP_503_SERVICE_UNAVAILABLE,
})
# The OpenAPI descriptions of the refusals most registry-backed routes share.
REFUSALS: dict[int | str, dict[str, object]] = {
    status.HTTP_403_FORBIDDEN: {"description": "The caller lacks the function group or role needed"},
    status.HTTP_404_NOT_FOUND: {"description": "Unknown device or organisation"},
}
# An Unavailable collaborator may be back soon: tell clients when to ask again.
RETRY_AFTER_SECONDS = 5


def status_of(error: GridwireError) -> int:
    """The status :data:`STATUS` gives the most specific class of ``error`` it names."""
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return status.HTTP_500_INTERNAL_SERVER_ERROR  # a GridwireError of no kind: a bug


def detail_of(error: GridwireError) -> object:
    """What the caller is told: ``public_detail()`` if the error has one, else its message."""
    public = getattr(error, "public_detail", None)
    return public() if callable(public) else str(error)


def _respond(request: Request, error: GridwireError, cause: BaseException | None = None) -> JSONResponse:
    code = status_of(error)
    log.log(logging.WARNING if code >= 500 or code == status.HTTP_400_BAD_REQUEST else logging.INFO,
            "%s %s: %d %s: %s%s", request.method, request.url.path, code, type(error).__name__, error,
            f" ({type(cause).__name__}: {cause})" if cause is not None else "")
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if code == status.HTTP_503_SERVICE_UNAVAILABLE else None
    return JSONResponse({"detail": detail_of(error)}, status_code=code, headers=headers)


async def _answer(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, GridwireError)
    return _respond(request, error)


async def _database(request: Request, error: Exception) -> JSONResponse:
    if isinstance(error, sa_exc.TimeoutError):  # the pool's wait for a free connection ran out
        reason = "the registry database has no connection free for now; retry later"
    elif unreachable(error):
        reason = "the registry database is unreachable; retry later"
    else:
        raise error  # a broken statement or a constraint nobody expected: a bug, a 500
    return _respond(request, RegistryUnavailable(reason), cause=error)


def install_error_table(app: FastAPI) -> None:
    """Answer every :class:`GridwireError` a route raises as :data:`STATUS` says, and a registry
    database out of reach as :class:`RegistryUnavailable`."""
    app.add_exception_handler(GridwireError, _answer)
    app.add_exception_handler(sa_exc.DBAPIError, _database)
    app.add_exception_handler(sa_exc.TimeoutError, _database)


__all__ = ["REFUSALS", "RETRY_AFTER_SECONDS", "STATUS", "detail_of", "install_error_table", "status_of"]
