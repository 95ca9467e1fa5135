"""What every request to the web API passes before a route sees it, and how refusals of its
input are told.

- :class:`BodyGuard` (ASGI middleware) reads the body first: one larger than the API accepts
  is refused with 413 and the limit, before any route or parser holds it; a JSON body holding
  ``NaN`` or ``Infinity`` (Python's parser takes them, JSON has no such numbers) is refused with
  422, so no route stores or echoes one; so is a JSON body that is not UTF-8, and a NUL
  character (U+0000) in the path, the query or a JSON string, which PostgreSQL cannot store.
- :func:`validation_refused` answers a request that does not match its schema with 422 and
  each problem's place and reason; the offending input is echoed only when it is short, and
  never as a number JSON cannot carry.
- :func:`method_refused` answers 405 with every method the path supports in ``Allow``, and
  OPTIONS with 204 and that ``Allow``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from broker.schemas.firmware import MAX_IMAGE_BYTES

log = logging.getLogger(__name__)

# Starlette renamed the 422 constant; the number is what clients see.
UNPROCESSABLE = 422
TOO_LARGE = 413
METHOD_NOT_ALLOWED = 405
ROUTED_METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")
# POST /v1/firmware carries the image in base64 and its signed manifest.
FIRMWARE_UPLOAD_BYTES = (MAX_IMAGE_BYTES // 3 + 1) * 4 + 1024 * 1024
# An input echoed in a 422 longer than this (as JSON) is left out: the reason says what is wrong.
ECHO_LIMIT = 200
NON_FINITE = (b"NaN", b"Infinity")
# PostgreSQL's text holds no U+0000, and no id or name needs one: refused wherever it comes.
NUL_REFUSED = "{where} holds a NUL character (U+0000), which no Gridwire id, name or text may contain"
# How much of a refused body is read and dropped so that its sender sees the 413; past this the
# connection is closed on it.
DRAIN_BYTES = 256 * 1024 * 1024


class _TooLarge(Exception):
    """The body went past the limit while it was read."""


class BodyGuard:
    """Refuse request bodies over ``limit`` bytes (413) and JSON bodies with NaN or Infinity (422).

    ``larger`` names paths (exact, with their method) allowed a bigger body, such as a firmware
    upload. The body is read before the app runs and handed on unchanged."""

    def __init__(self, app: ASGIApp, *, limit: int, larger: Mapping[tuple[str, str], int] | None = None) -> None:
        self.app = app
        self.limit = limit
        self.larger = dict(larger or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.larger.get((scope["method"], scope["path"]), self.limit)
        declared = _content_length(scope)
        try:
            if declared is not None and declared > limit:
                raise _TooLarge
            body = await _read_body(receive, limit)
        except _TooLarge:
            # Read (and drop) the rest first: a client still sending sees a reset, not the answer.
            await _drain(receive, DRAIN_BYTES)
            await _refuse(scope, send, TOO_LARGE, _too_large(limit))
            return
        problem = _url_problem(scope) or (_json_problem(body) if _is_json(scope) else None)
        if problem is not None:
            await _refuse(scope, send, UNPROCESSABLE, problem)
            return
        await self.app(scope, _replay(body, receive), send)


def _url_problem(scope: Scope) -> str | None:
    query: bytes = scope["query_string"]
    if "\x00" in scope["path"] or b"\x00" in query or b"%00" in query:
        return NUL_REFUSED.format(where="the path or query")
    return None


def _json_problem(body: bytes) -> str | None:
    """Why a JSON body is refused before its route reads it, or None. The byte searches are
    cheap; a body is parsed here only when one of them hits."""
    if not _utf8(body):
        return "the JSON body is not UTF-8 text (RFC 8259)"
    if any(word in body for word in NON_FINITE) and _has_non_finite(body):
        return ("the JSON body holds NaN or Infinity, which JSON does not allow (RFC 8259): send a finite number, "
                "or leave the field out")
    if b"\\u0000" in body and _has_nul(body):
        return NUL_REFUSED.format(where="a JSON string")
    return None


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _is_json(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json" or media.endswith(b"+json")
    return False


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)  # the client went away; the app sees an empty body and answers no one
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _drain(receive: Receive, most: int) -> None:
    """Read what remains of the body without keeping it, up to ``most`` bytes."""
    read = 0
    while read <= most:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return
        read += len(message.get("body", b""))


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: disconnects, as the app expects

    return replayed


def _utf8(body: bytes) -> bool:
    try:
        body.decode()
    except UnicodeDecodeError:
        return False
    return True


def _has_nul(body: bytes) -> bool:
    try:
        parsed = json.loads(body)
    except ValueError:
        return False  # the route's parser says what is wrong
    todo = [parsed]
    while todo:
        item = todo.pop()
        if isinstance(item, str) and "\x00" in item:
            return True
        if isinstance(item, dict):
            todo += [*item.keys(), *item.values()]
        elif isinstance(item, list):
            todo += item
    return False


def _has_non_finite(body: bytes) -> bool:
    """Whether the body is JSON with a NaN or Infinity in it (outside a string). A body that
    is not JSON is left to the route's parser to refuse."""

    def refuse(_constant: str) -> float:
        raise ValueError("non-finite")

    try:
        json.loads(body, parse_constant=refuse)
    except ValueError as exc:
        return str(exc) == "non-finite"
    return False


def _too_large(limit: int) -> str:
    return f"the request body is larger than the {limit} bytes this API accepts here"


async def _refuse(scope: Scope, send: Send, status: int, reason: str) -> None:
    log.info("%s %s: %d %s", scope["method"], scope["path"], status, reason)
    response = JSONResponse({"detail": reason}, status_code=status)
    if status == TOO_LARGE:
        # The rest of the body is not read: the connection cannot be reused.
        response.headers["Connection"] = "close"
    await response(scope, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


# --- 422 for input that does not match its schema ---------------------------------------------


def _safe(value: Any) -> Any:  # noqa: ANN401 - any JSON-able input
    """``value`` with every number JSON cannot carry written as text."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, list):
        return [_safe(item) for item in value]
    if isinstance(value, dict):
        return {key: _safe(item) for key, item in value.items()}
    return value


def _echo(value: Any) -> tuple[bool, Any]:  # noqa: ANN401
    """(True, the value as JSON can carry it) if it is short enough to echo, else (False, None)."""
    try:
        safe = _safe(jsonable_encoder(value))
        text = json.dumps(safe, allow_nan=False)
    except (TypeError, ValueError):
        return False, None
    return (True, safe) if len(text) <= ECHO_LIMIT else (False, None)


def problems(errors: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Validation errors as the 422 tells them: place, reason, and the input only when short."""
    told: list[dict[str, Any]] = []
    for error in errors:
        problem: dict[str, Any] = {"type": error.get("type"), "loc": list(error.get("loc", ())),
                                   "msg": str(error.get("msg", ""))[:1000]}
        if "input" in error:
            shown, value = _echo(error["input"])
            if shown:
                problem["input"] = value
        if error.get("ctx"):
            shown, value = _echo(error["ctx"])
            if shown:
                problem["ctx"] = value
        told.append(problem)
    return told


async def validation_refused(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    told = problems(error.errors())
    log.info("%s %s: 422 %s", request.method, request.url.path, "; ".join(p["msg"] for p in told[:3]))
    return JSONResponse({"detail": told}, status_code=UNPROCESSABLE)


# --- Allow ------------------------------------------------------------------------------------


def allow_header(app: Starlette, scope: Scope) -> str | None:
    """The methods the routes matching this request's path take, and OPTIONS, comma-separated;
    None when no route matches the path."""
    # Asked method by method: routers included in the app match as one route, naming no methods.
    methods = {method for method in ROUTED_METHODS
               if any(route.matches({**scope, "method": method})[0] is Match.FULL for route in app.router.routes)}
    if not methods:
        return None
    return ", ".join(sorted(methods | {"OPTIONS"}))


async def method_refused(request: Request, error: Exception) -> Response:
    """405 with every method the path takes in ``Allow`` (Starlette names only the first route's),
    or, for OPTIONS, 204 with that ``Allow``; any other HTTP error as FastAPI answers it."""
    assert isinstance(error, StarletteHTTPException)
    if error.status_code != METHOD_NOT_ALLOWED:
        return await http_exception_handler(request, error)
    allow = allow_header(request.app, request.scope) or ""
    if request.method == "OPTIONS":
        return Response(status_code=204, headers={"Allow": allow})
    return JSONResponse({"detail": f"{request.method} is not allowed here; allowed: {allow}"},
                        status_code=METHOD_NOT_ALLOWED, headers={"Allow": allow})


def install_guards(app: FastAPI, *, limit: int) -> None:
    """The body guard, the 422 answer and the Allow answers, on ``app``."""
    app.add_middleware(BodyGuard, limit=limit, larger={("POST", "/v1/firmware"): FIRMWARE_UPLOAD_BYTES})
    app.add_exception_handler(RequestValidationError, validation_refused)
    app.add_exception_handler(StarletteHTTPException, method_refused)


__all__ = ["FIRMWARE_UPLOAD_BYTES", "BodyGuard", "allow_header", "install_guards", "method_refused", "problems",
           "validation_refused"]
