"""One error family, one HTTP mapping: every kind answers its status with the error's message
as the reason, from the table create_app registers; every error cloud/ (firmware included)
and gridwire/ define is a kind."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from fastapi import APIRouter, FastAPI

import cloud
import firmware_ota
import gridwire
from broker.errors import (
    Conflict,
    Forbidden,
    GridwireError,
    Invalid,
    NotFound,
    Unavailable,
)
from cloud.api import create_app
from cloud.api.errors import STATUS
from cloud.firmware.campaigns import TargetsRefused
from cloud.registry import DeviceNotFound, NotAuthorised
from cloud.settings import ApiSettings
from cloud.store import StoreRejected, StoreUnavailable
from firmware_ota.errors import CampaignNotFound
from firmware_ota.signing import SignatureError
from firmware_ota.store import FirmwareExists, ImageRejected

KINDS = (NotFound, Conflict, Forbidden, Invalid, Unavailable)

# (error raised by a route, status, detail answered)
CASES: list[tuple[GridwireError, int, object]] = [
    (NotFound("no such thing"), 404, "no such thing"),
    (Conflict("not in this state"), 409, "not in this state"),
    (Forbidden("not yours"), 403, "not yours"),
    (Invalid("never valid"), 422, "never valid"),
    (Unavailable("down for now"), 503, "down for now"),
    # The packages' own errors answer as their kind.
    (DeviceNotFound("m-1"), 404, "device 'm-1' is not registered"),
    (CampaignNotFound("c-1"), 404, "not found: c-1"),
    (NotAuthorised("OWNER or AD_HOC needed"), 403, "OWNER or AD_HOC needed"),
    (FirmwareExists("fw-1 exists"), 409, "fw-1 exists"),
    (TargetsRefused("2 devices cannot", {"m-1": "decommissioned"}), 422,
     {"reason": "2 devices cannot", "devices": {"m-1": "decommissioned"}}),
    # Rows more specific than their kind, kept from before the table.
    (SignatureError("bad signature"), 400, "bad signature"),
    (ImageRejected("size mismatch"), 400, "size mismatch"),
    (StoreRejected("bad statement"), 400, "the store refused the request: bad statement"),
    # A store's message names its address: callers get a reason without it.
    (StoreUnavailable("InfluxDB at http://10.0.0.5:8086 unreachable"), 503,
     "the time-series store is unavailable; retry later"),
]


def raising(errors: list[GridwireError]) -> APIRouter:
    router = APIRouter()
    for number, error in enumerate(errors):
        router.add_api_route(f"/raise/{number}", _raiser(error), methods=["GET"])
    return router


def _raiser(error: GridwireError) -> Callable[[], object]:
    async def route() -> None:
        raise error
    return route


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    app: FastAPI = create_app(settings=ApiSettings(jwt_secret="errors-test-secret-0123456789abcdef"),
                              extra_routers=[raising([error for error, _, _ in CASES])])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        yield client


@pytest.mark.parametrize("number", range(len(CASES)), ids=[type(e).__name__ for e, _, _ in CASES])
async def test_each_error_answers_its_status_with_its_reason(http: httpx.AsyncClient, number: int) -> None:
    _, status, detail = CASES[number]
    answer = await http.get(f"/raise/{number}")
    assert (answer.status_code, answer.json()) == (status, {"detail": detail})
    # Only an Unavailable collaborator says when to ask again.
    assert ("Retry-After" in answer.headers) is (status == 503)


def test_every_kind_has_a_status() -> None:
    assert set(KINDS) <= set(STATUS)


def _defined_errors(package: object) -> list[type[BaseException]]:
    found = []
    for info in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}."):  # type: ignore[attr-defined]
        if ".migrations." in info.name:
            continue  # alembic scripts, run by alembic only
        module = importlib.import_module(info.name)
        found += [cls for _, cls in inspect.getmembers(module, inspect.isclass)
                  if issubclass(cls, BaseException) and cls.__module__ == info.name]
    return found


@pytest.mark.parametrize("package", [cloud, firmware_ota, gridwire], ids=lambda p: p.__name__)
def test_every_error_a_package_defines_is_one_of_the_kinds(package: object) -> None:
    defined = _defined_errors(package)
    assert defined
    # Private exceptions (_Slow, _Unsure) only steer control flow inside one module.
    public = [cls for cls in defined if not cls.__name__.startswith("_")]
    # A package's root (RegistryError, StoreError) only groups its errors, each of them a kind.
    roots = {cls for cls in public if issubclass(cls, GridwireError) and cls.__subclasses__()
             and all(issubclass(sub, KINDS) for sub in cls.__subclasses__())}
    assert [f"{c.__module__}.{c.__qualname__}" for c in public if not issubclass(c, KINDS) and c not in roots] == []
