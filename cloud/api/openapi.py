"""The web API's OpenAPI document, completed with the answers every operation may give besides
those its route names: what the guards, the credential check and the error table answer.

FastAPI documents what a route declares. The refusals common to many routes are added here,
from what the operation has: a bearer credential (401, 403, and 503 while the registry that
checks it cannot be reached), a path naming a resource (404), a body (400, 413 from the body
guard), and 422 for any (the guard refuses a NUL in any URL); each refusal's body is
``{"detail": ...}`` (:data:`REFUSAL`), and a 503 says when to ask again (``Retry-After``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

REFUSAL_REF = "#/components/schemas/Refusal"
# What every 4xx and 5xx of the API carries: the reason, as text, as the list of a schema
# mismatch's problems (place, reason, short input), or as a route's structured detail.
REFUSAL: dict[str, Any] = {
    "title": "Refusal",
    "type": "object",
    "required": ["detail"],
    "properties": {"detail": {"anyOf": [
        {"type": "string"},
        {"type": "array", "items": {"$ref": "#/components/schemas/ValidationError"}},
        {"type": "array"},
        {"type": "object"},
    ]}},
}
# The parts of a schema mismatch's problem (FastAPI's ValidationError); input and ctx only when short.
VALIDATION_ERROR: dict[str, Any] = {
    "title": "ValidationError",
    "type": "object",
    "required": ["loc", "msg", "type"],
    "properties": {
        "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}, "title": "Location"},
        "msg": {"type": "string", "title": "Message"},
        "type": {"type": "string", "title": "Error Type"},
        "input": {"title": "Input"},
        "ctx": {"type": "object", "title": "Context"},
    },
}
_HEADERS: dict[str, dict[str, Any]] = {
    "401": {"WWW-Authenticate": {"description": "The bearer scheme, and why the credential was refused",
                                 "schema": {"type": "string"}}},
    "503": {"Retry-After": {"description": "Seconds after which to ask again", "schema": {"type": "string"}}},
}
_COMMON: dict[str, str] = {
    "400": "The body is not what the route can read",
    "401": "Missing, invalid, expired or revoked bearer credential",
    "403": "The caller's organisation is unknown or disabled, or lacks the role, function group or scope needed",
    "404": "The named resource does not exist, or is not visible to the caller",
    "413": "The body is larger than the API accepts",
    "422": "The request does not match its schema, or breaks a rule the schema cannot say (the reason tells)",
    "503": "A collaborator is unavailable for now (the registry database unreachable or busy, the time-series "
           "store, the broker): ask again after Retry-After",
}


def _refusal(code: str, description: str) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description,
                                "content": {"application/json": {"schema": {"$ref": REFUSAL_REF}}}}
    if code in _HEADERS:
        response["headers"] = _HEADERS[code]
    return response


def complete(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with every operation's common refusals added (in place; also returned)."""
    components = document.setdefault("components", {}).setdefault("schemas", {})
    components["Refusal"] = REFUSAL
    components["ValidationError"] = VALIDATION_ERROR
    for path, operations in document.get("paths", {}).items():
        for operation in operations.values():
            responses: dict[str, Any] = operation.setdefault("responses", {})
            codes: list[str] = []
            if operation.get("security"):
                # Every credential is checked against the registry, so any of these may meet it down.
                codes += ["401", "403", "503"]
            if "{" in path:
                codes.append("404")
            if "requestBody" in operation:
                codes += ["400", "413"]
            # Any request may be refused before its route: a NUL in its path or query, say.
            codes.append("422")
            for code in codes:
                if code not in responses:
                    responses[code] = _refusal(code, _COMMON[code])
            for code, response in responses.items():
                if code[0] in "45":
                    # A route's own description is kept; the body is the refusal's.
                    response["content"] = {"application/json": {"schema": {"$ref": REFUSAL_REF}}}
                    if code in _HEADERS:
                        response.setdefault("headers", _HEADERS[code])
    return document


def install_openapi(app: FastAPI) -> None:
    """Serve (and let ``gridwire docs openapi`` write) the completed document."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(get_openapi(
                title=app.title, version=app.version, openapi_version=app.openapi_version,
                description=app.description, routes=app.routes))
        return app.openapi_schema

    setter: Callable[[], dict[str, Any]] = build
    app.openapi = setter  # type: ignore[method-assign]


__all__ = ["REFUSAL", "complete", "install_openapi"]
