"""The operator console under ``/console``: server-rendered pages (Jinja2) behind the API's own
login (see :mod:`cloud.api.console_session`), no JavaScript but a vendored chart library
(uPlot, from npm with its lockfile) served from the package. Nothing is loaded from the network.

Every page asks only bounded questions (GROUP BY counts, one page of rows, one meter's range),
so it stays fast however large the fleet is (``bench/console.py``: 10,000 devices). Actions go
through the same code as the web API: a light is switched by the public-lighting domain's
:class:`~cloud.domains.submit.Submitter`, a campaign paused by the campaign service.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from broker.errors import Conflict, GridwireError, NotFound
from cloud.api.console_session import (
    CSRF_FIELD,
    Operator,
    csrf_ok,
    csrf_token,
    current_operator,
    end_session,
    set_csrf,
    start_session,
    verify,
)
from cloud.api.deps import get_campaigns
from cloud.auth import AuthError
from cloud.domains.publiclighting.translator import DOMAIN as LIGHTING
from cloud.domains.submit import Submitter
from cloud.monitoring.fleet import FleetQueries
from cloud.monitoring.store import MonitoringStore
from cloud.registry import DeviceType, Registry
from cloud.store.query import ReadingQuery

log = logging.getLogger(__name__)

CONSOLE_DIR = Path(__file__).resolve().parents[1] / "console"
TEMPLATES = Jinja2Templates(directory=CONSOLE_DIR / "templates")
STATIC = {name: CONSOLE_DIR / "static" / name for name in ("console.css", "uPlot.min.css", "uPlot.iife.min.js",
                                                          "meter-chart.js")}
PAGE_SIZE = 100
MAX_POINTS = 5000

router = APIRouter(prefix="/console", include_in_schema=False)


async def _render(request: Request, template: str, who: Operator | None,
                  **context: Any) -> HTMLResponse:  # noqa: ANN401 - whatever the template shows
    csrf = csrf_token(request)
    response = TEMPLATES.TemplateResponse(request, template, {"who": who, "csrf": csrf, "csrf_field": CSRF_FIELD,
                                                              **context})
    set_csrf(request, response)
    # Everything the page uses comes from this server; a style attribute set by the chart is allowed.
    response.headers["Content-Security-Policy"] = ("default-src 'self'; style-src 'self' 'unsafe-inline'; "
                                                   "img-src 'self' data:; frame-ancestors 'none'")
    return response


def _to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/console/login?next={quote(target, safe='')}", status_code=303)


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded form's fields (first value of each); the console posts nothing else."""
    parsed = parse_qs((await request.body()).decode(errors="replace"), keep_blank_values=True)
    return {key: values[0] for key, values in parsed.items()}


def _registry(request: Request) -> Registry:
    return request.app.state.registry


# --- login ------------------------------------------------------------------------------------


@router.get("/login")
async def login_form(request: Request, next: str = "/console") -> Response:  # noqa: A002 - the query's name
    return await _render(request, "login.html", None, next=_safe_next(next), error=None)


@router.post("/login")
async def login(request: Request) -> Response:
    form = await _form(request)
    target = _safe_next(form.get("next", "/console"))
    if not csrf_ok(request, form.get(CSRF_FIELD)):
        return await _render(request, "login.html", None, next=target, error="the form expired; try again")
    try:
        operator = await verify(request, form.get("token", ""))
    except AuthError as exc:
        log.warning("console login refused: %s", exc)
        response = await _render(request, "login.html", None, next=target, error=str(exc))
        response.status_code = 401
        return response
    log.info("console login: %s of %s", operator.subject, operator.organisation)
    response = RedirectResponse(target, status_code=303)
    start_session(request, response, form["token"])
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    form = await _form(request)
    if not csrf_ok(request, form.get(CSRF_FIELD)):
        return Response("CSRF check failed", status_code=403)
    response = RedirectResponse("/console/login", status_code=303)
    end_session(response)
    return response


def _safe_next(target: str) -> str:
    """Only a console path: never a redirect off the site."""
    return target if target.startswith("/console") and "//" not in target else "/console"


# --- pages ------------------------------------------------------------------------------------


async def _device_page(request: Request, device_id: str, what: str) -> tuple[Operator, Registry, Any] | Response:
    """The operator, the registry and the device a device's page shows; or the login form, or
    a page saying the device is not registered."""
    who = await current_operator(request)
    if who is None:
        return _to_login(request)
    registry = _registry(request)
    try:
        return who, registry, await registry.get_device(device_id)
    except NotFound:
        return await _render(request, "missing.html", who, what=f"{what} {device_id}")



@router.get("")
async def overview(request: Request) -> Response:
    """Concentrators online or offline, last seen, outbox backlog; devices by type, firmware and owner."""
    who = await current_operator(request)
    if who is None:
        return _to_login(request)
    fleet = await FleetQueries(_registry(request).engine).status()
    return await _render(request, "overview.html", who, fleet=fleet)


@router.get("/concentrators/{concentrator_id}")
async def concentrator(request: Request, concentrator_id: str) -> Response:
    """One concentrator's meters with their communication health."""
    found = await _device_page(request, concentrator_id, "concentrator")
    if isinstance(found, Response):
        return found
    who, registry, device = found
    queries = FleetQueries(registry.engine)
    state = await MonitoringStore(registry.engine).concentrator_state(concentrator_id)
    return await _render(request, "concentrator.html", who, device=device, state=state,
                         meters=await queries.meters_of(concentrator_id))


@router.get("/meters/{meter_id}")
async def meter(request: Request, meter_id: str, hours: float = 24.0, prop: str | None = None) -> Response:
    """A meter's readings of one numeric property (``prop``; default the first energy register)
    over the last ``hours``, its latest values and its events."""
    found = await _device_page(request, meter_id, "meter")
    if isinstance(found, Response):
        return found
    who, registry, device = found
    hours = min(max(hours, 0.1), 24 * 31)
    end = request.app.state.clock().astimezone(UTC) + timedelta(hours=1)  # meter clocks may run ahead
    start = end - timedelta(hours=hours + 1)
    error = None
    readings: list[Any] = []
    try:
        readings = await request.app.state.store.query_readings(
            ReadingQuery(start=start, end=end, meters=frozenset([meter_id])), limit=MAX_POINTS)
    except GridwireError as exc:
        error = f"readings unavailable: {exc}"
    units = _numeric_properties(readings)
    chosen = prop if prop in units else next((p for p in DEFAULT_PROPERTIES if p in units), next(iter(units), None))
    chart = _chart(readings, chosen, units.get(chosen or "", ""))
    latest = readings[-1] if readings else None
    events = await MonitoringStore(registry.engine).recent_events(device_id=meter_id, limit=50)
    return await _render(request, "meter.html", who, device=device, chart=chart, latest=latest, hours=hours,
                         count=len(chart["data"][0]), error=error, events=events, properties=sorted(units),
                         chosen=chosen)


# What a meter page charts first: energy delivered (electricity), then volume (gas, water).
DEFAULT_PROPERTIES = ("OBIS_1.8.1", "OBIS_1.8.0", "OBIS_24.2.1", "OBIS_8.0.0")


def _numeric_properties(readings: list[Any]) -> dict[str, str]:
    """Every numeric property in ``readings`` with its unit."""
    found: dict[str, str] = {}
    for reading in readings:
        for value in reading.property_values:
            if value.numerical_value is not None:
                found.setdefault(value.operational_property.property_id, value.unit or "")
    return found


def _chart(readings: list[Any], prop: str | None, unit: str) -> dict[str, Any]:
    """uPlot's data for one property: x (Unix seconds) and its values, readings without it left out."""
    times: list[float] = []
    values: list[float] = []
    for reading in readings:
        found = next((v.numerical_value for v in reading.property_values
                      if v.operational_property.property_id == prop and v.numerical_value is not None), None)
        if found is not None:
            times.append(reading.reading_time.timestamp())
            values.append(found)
    label = f"{prop} ({unit})" if unit else (prop or "")
    return {"series": [{"label": label}] if prop else [], "data": [times, values] if prop else [times]}


@router.get("/lights")
async def lights(request: Request, page: int = 0) -> Response:
    """Street lights, a page at a time, each with switch and dim controls."""
    who = await current_operator(request)
    if who is None:
        return _to_login(request)
    page = max(page, 0)
    found = await _registry(request).list_devices(device_type=DeviceType.STREET_LIGHT, limit=PAGE_SIZE + 1,
                                                  offset=page * PAGE_SIZE)
    recent = await request.app.state.requests.recent(limit=20)
    return await _render(request, "lights.html", who, lights=found[:PAGE_SIZE], page=page,
                         more=len(found) > PAGE_SIZE, recent=[r for r in recent if r.domain == LIGHTING.name])


@router.post("/lights/{device_id}")
async def switch_light(request: Request, device_id: str) -> Response:
    """Switch or dim a light through the public-lighting domain; show the request's result page."""
    who = await current_operator(request)
    if who is None:
        return _to_login(request)
    form = await _form(request)
    if not csrf_ok(request, form.get(CSRF_FIELD)):
        return Response("CSRF check failed", status_code=403)
    parameters: dict[str, Any] = {"on": form.get("on") == "true"}
    if form.get("dimLevel"):
        parameters["dimLevel"] = int(form["dimLevel"])
    submitter = Submitter(org=who.organisation, registry=_registry(request), requests=request.app.state.requests,
                          mqtt=request.app.state.mqtt)
    try:
        accepted = await submitter.submit(LIGHTING, "setLight", device_id, parameters)
    except (GridwireError, ValueError) as exc:
        return await _render(request, "missing.html", who, what=f"switching {device_id}: {exc}")
    return RedirectResponse(f"/console/commands/{accepted.correlation_id}", status_code=303)


@router.get("/commands")
async def commands(request: Request) -> Response:
    """The newest functional requests and their state."""
    who = await current_operator(request)
    if who is None:
        return _to_login(request)
    return await _render(request, "commands.html", who, requests=await request.app.state.requests.recent(limit=100))


@router.get("/commands/{correlation_id}")
async def command(request: Request, correlation_id: str) -> Response:
    """One functional request: its generic commands and their lifecycle; refreshes until final."""
    who = await current_operator(request)
    if who is None:
        return _to_login(request)
    found, generic = await request.app.state.requests.with_commands(correlation_id)
    if found is None:
        return await _render(request, "missing.html", who, what=f"request {correlation_id}")
    return await _render(request, "command.html", who, request_=found, commands=generic)


@router.get("/campaigns")
async def campaigns(request: Request) -> Response:
    who = await current_operator(request)
    if who is None:
        return _to_login(request)
    service = await get_campaigns(_registry(request))
    return await _render(request, "campaigns.html", who, campaigns=await service.list())


@router.get("/campaigns/{campaign_id}")
async def campaign(request: Request, campaign_id: str) -> Response:
    """Progress by wave, thresholds, and pause, resume and cancel."""
    who = await current_operator(request)
    if who is None:
        return _to_login(request)
    service = await get_campaigns(_registry(request))
    try:
        status = await service.status(campaign_id)
    except NotFound:
        return await _render(request, "missing.html", who, what=f"campaign {campaign_id}")
    except GridwireError as exc:
        return await _render(request, "missing.html", who, what=str(exc))
    return await _render(request, "campaign.html", who, status=status, message=request.query_params.get("message"))


@router.post("/campaigns/{campaign_id}/{action}")
async def control_campaign(request: Request, campaign_id: str, action: str) -> Response:
    who = await current_operator(request)
    if who is None:
        return _to_login(request)
    form = await _form(request)
    if not csrf_ok(request, form.get(CSRF_FIELD)):
        return Response("CSRF check failed", status_code=403)
    if action not in ("pause", "resume", "cancel", "start"):
        return Response("unknown action", status_code=404)
    service = await get_campaigns(_registry(request))
    message = f"{action} done"
    try:
        await service.control(campaign_id, action)
    except Conflict as exc:
        message = f"{action} refused: {exc}"
    return RedirectResponse(f"/console/campaigns/{campaign_id}?message={quote(message)}", status_code=303)


@router.get("/dead-letters")
async def dead_letters(request: Request, page: int = 0) -> Response:
    who = await current_operator(request)
    if who is None:
        return _to_login(request)
    store = request.app.state.dead_letters
    page = max(page, 0)
    letters = await store.list(limit=PAGE_SIZE, offset=page * PAGE_SIZE)
    return await _render(request, "dead_letters.html", who, letters=letters, total=await store.count(), page=page,
                         page_size=PAGE_SIZE)


@router.get("/events")
async def events(request: Request) -> Response:
    """Monitoring events and alarms (concentrator and device on/offline, clock drift, ...), newest first."""
    who = await current_operator(request)
    if who is None:
        return _to_login(request)
    found = await MonitoringStore(_registry(request).engine).recent_events(limit=200)
    return await _render(request, "events.html", who, events=found, now=datetime.now(UTC))


@router.get("/static/{name}")
async def static(name: str) -> Response:
    """The console's stylesheet and the vendored chart library (no CDN: nothing from the network)."""
    path = STATIC.get(name)
    if path is None:
        return Response(status_code=404)
    return FileResponse(path, headers={"Cache-Control": "public, max-age=3600"})
