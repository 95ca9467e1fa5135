"""Command line for operators watching long work: ``gridwire fleet status`` and
``gridwire campaign watch ID``, against the platform API.

On a terminal they draw live (rich: tables, progress bars with an ETA); piped into a file or
another program they print one plain line per change, so a script or a test reads them.
"""

from __future__ import annotations

import ssl
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

ApiOption = Annotated[str, typer.Option("--api", envvar="GRIDWIRE_API_URL", help="Platform API base URL.")]
TokenOption = Annotated[str, typer.Option("--token", envvar="GRIDWIRE_API_TOKEN",
                                          help="A platform administrator's bearer token.")]
CaOption = Annotated[Optional[Path], typer.Option("--api-ca", envvar="GRIDWIRE_API_CA",
                                                  help="CA certificate the API's HTTPS certificate is checked "
                                                       "against (default: the system's).")]
DEFAULT_API = "https://127.0.0.1:8080"

fleet_app = typer.Typer(no_args_is_help=True, help="The fleet: concentrators, meters, their state.")
campaign_app = typer.Typer(no_args_is_help=True, help="Firmware campaigns: watch one roll out.")


def _client(api: str, token: str, api_ca: Path | None = None) -> Any:  # noqa: ANN401 - httpx.Client (fast --help)
    import httpx

    return httpx.Client(base_url=api.rstrip("/"), timeout=30, verify=ssl.create_default_context(cafile=str(api_ca)) if api_ca else True,
                        headers={"Authorization": f"Bearer {token}"} if token else {})


def _get(client: Any, path: str) -> Any:  # noqa: ANN401
    import httpx

    try:
        answer = client.get(path)
    except httpx.HTTPError as exc:
        typer.echo(f"cannot reach the API: {exc}", err=True)
        raise typer.Exit(code=1) from exc
    if answer.status_code >= 400:
        typer.echo(f"{path}: {answer.status_code} {answer.text}", err=True)
        raise typer.Exit(code=1)
    return answer.json()


@fleet_app.callback()
def fleet() -> None:
    """The fleet: concentrators, meters, their state."""


@fleet_app.command("status")
def fleet_status(api: ApiOption = DEFAULT_API, token: TokenOption = "", api_ca: CaOption = None,
                 meters: Annotated[bool, typer.Option(help="List each concentrator's meters too.")] = False) -> None:
    """A table of concentrators (state, last seen, outbox backlog, meters online) and counts of
    devices by type and firmware version."""
    from rich.console import Console
    from rich.table import Table

    with _client(api, token, api_ca) as client:
        status = _get(client, "/v1/fleet")
        behind = {c["concentratorId"]: _get(client, f"/v1/fleet/concentrators/{c['concentratorId']}/meters")
                  for c in status["concentrators"]} if meters else {}
    console = Console(width=160)
    table = Table(title="Concentrators")
    for column in ("concentrator", "state", "last seen", "outbox", "software", "meters", "online", "offline"):
        table.add_column(column)
    for c in status["concentrators"]:
        table.add_row(c["concentratorId"], c["state"] or "never seen", (c["lastSeen"] or "-")[:19],
                      _text(c["outboxBacklog"]), c["softwareVersion"] or "-", str(c["meters"]),
                      str(c["metersOnline"]), str(c["metersOffline"]))
    console.print(table)
    for cid, rows in behind.items():
        listing = Table(title=f"Meters of {cid}")
        for column in ("meter", "protocol", "model", "firmware", "online", "reads ok", "failed"):
            listing.add_column(column)
        for m in rows:
            listing.add_row(m["deviceId"], m["protocol"], m["model"] or "-", m["firmwareVersion"] or "-",
                            {True: "yes", False: "no"}.get(m["online"], "-"), str(m["successes"]), str(m["failures"]))
        console.print(listing)
    counts = Table(title="Devices")
    counts.add_column("by")
    counts.add_column("count")
    for kind, number in sorted(status["devicesByType"].items()):
        counts.add_row(f"type {kind}", str(number))
    for version, number in sorted(status["firmwareVersions"].items()):
        counts.add_row(f"firmware {version}", str(number))
    for org, number in sorted(status["devicesByOrganisation"].items()):
        counts.add_row(f"owner {org}", str(number))
    console.print(counts)


def _text(value: object) -> str:
    return "-" if value is None else str(value)


@campaign_app.callback()
def campaign() -> None:
    """Firmware campaigns: watch one roll out."""


@campaign_app.command("watch")
def campaign_watch(campaign_id: Annotated[str, typer.Argument(help="The campaign's id.")],
                   api: ApiOption = DEFAULT_API, token: TokenOption = "", api_ca: CaOption = None,
                   interval: Annotated[float, typer.Option(help="Seconds between looks.", min=0.1)] = 1.0,
                   timeout: Annotated[float | None, typer.Option(help="Give up after this many seconds.")] = None,
                   ) -> None:
    """Follow a campaign until it ends: per wave, how many succeeded, failed and are in flight,
    with progress bars and an ETA. Exits 0 if it finished, 1 if it stopped, was cancelled or failed."""
    from rich.console import Console

    console = Console()
    started = time.monotonic()
    with _client(api, token, api_ca) as client:
        view = _Watch(console)
        try:
            while True:
                status = _get(client, f"/v1/campaigns/{campaign_id}/status")
                view.update(status)
                if not status["campaign"]["active"]:
                    break
                if timeout is not None and time.monotonic() - started > timeout:
                    view.close()
                    typer.echo(f"campaign {campaign_id} still {status['campaign']['state']} after {timeout:.0f}s",
                               err=True)
                    raise typer.Exit(code=2)
                time.sleep(interval)
        finally:
            view.close()
    counts = status["counts"]
    state = status["campaign"]["state"]
    typer.echo(f"campaign {campaign_id} {state}: {counts.get('SUCCEEDED', 0)} succeeded, "
               f"{counts.get('FAILED', 0)} failed, {counts.get('CANCELLED', 0)} cancelled")
    for failed in status["failed"]:
        typer.echo(f"  failed {failed['device']} (wave {failed['wave']}): {failed['failureCode']} "
                   f"{failed['failureReason']}")
    raise typer.Exit(code=0 if state == "FINISHED" else 1)


class _Watch:
    """A live table of progress bars on a terminal; a plain line per change elsewhere."""

    def __init__(self, console: Any) -> None:  # noqa: ANN401 - rich.console.Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._console = console
        self._live = console.is_terminal
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[detail]}"), TimeRemainingColumn(), console=console)
        self._tasks: dict[str, Any] = {}
        self._last = ""
        if self._live:
            self._progress.start()

    def update(self, status: dict[str, Any]) -> None:
        rows = [("all", status["counts"], "")]
        rows += [(f"wave {w['index']}" + (" (canary)" if w["canary"] else ""), w["counts"], "")
                 for w in status["waves"]]
        state = status["campaign"]["state"]
        if not self._live:
            line = f"{state} " + " | ".join(f"{name}: {_summary(counts)}" for name, counts, _ in rows)
            if line != self._last:
                typer.echo(line)
                self._last = line
            return
        for name, counts, _ in rows:
            total = sum(counts.values())
            done = counts.get("SUCCEEDED", 0) + counts.get("FAILED", 0) + counts.get("CANCELLED", 0)
            detail = f"{_summary(counts)} [{state}]" if name == "all" else _summary(counts)
            if name not in self._tasks:
                self._tasks[name] = self._progress.add_task(name, total=total, detail=detail)
            self._progress.update(self._tasks[name], completed=done, total=total, detail=detail)

    def close(self) -> None:
        if self._live:
            self._progress.stop()
            self._live = False


def _summary(counts: dict[str, int]) -> str:
    total = sum(counts.values())
    return (f"{counts.get('SUCCEEDED', 0)}/{total} succeeded, {counts.get('FAILED', 0)} failed, "
            f"{counts.get('IN_FLIGHT', 0)} in flight, {counts.get('PENDING', 0)} pending")
