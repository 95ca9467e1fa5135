"""``gridwire probe``: does a service answer? Exit 0 if so, 1 with the reason if not.

The health checks of ``docker-compose.yml`` and the operator's steps in ``docs/DEPLOY.md`` use
these, so a check reads the same wherever it runs. Standard library only: the edge-only install
has them too.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Optional

import typer

probe_app = typer.Typer(no_args_is_help=True,
                        help="Health checks: exit 0 when a service answers, 1 with the reason when not.")

Timeout = Annotated[float, typer.Option(help="Seconds to wait for an answer.")]
Wait = Annotated[float, typer.Option(help="Keep asking for up to this many seconds until healthy (a service "
                                          "that is starting).")]


class _Unhealthy(Exception):
    """Why a check failed."""


def _probe(check: Callable[[], str], *, wait: float) -> None:
    """Run ``check`` (it returns what is healthy, or raises ``_Unhealthy``) until it passes or
    ``wait`` seconds have gone; exit 1 with the last reason if it never did."""
    deadline = time.monotonic() + wait
    while True:
        try:
            typer.echo(f"healthy: {check()}")
            return
        except _Unhealthy as exc:
            if time.monotonic() >= deadline:
                typer.echo(f"unhealthy: {exc}", err=True)
                raise typer.Exit(1) from None
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))


@probe_app.command("http")
def probe_http(
    url: Annotated[str, typer.Argument(help="The URL to GET, e.g. https://127.0.0.1:8443/healthz.")],
    ca_file: Annotated[Optional[Path], typer.Option(help="Verify an HTTPS server against this CA certificate "
                                                         "(default: the system's).")] = None,
    timeout: Timeout = 5.0,
    wait: Wait = 0.0,
) -> None:
    """GET a URL; healthy when it answers 2xx (an HTTPS server's certificate is verified)."""
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None) \
        if url.startswith("https:") else None

    import urllib.error
    import urllib.request

    def check() -> str:
        try:
            with urllib.request.urlopen(url, timeout=timeout, context=context) as answer:  # noqa: S310 - http(s)
                return f"{url} answered {answer.status}"
        except urllib.error.HTTPError as exc:
            raise _Unhealthy(f"{url} answered {exc.code}: {exc.read()[:200].decode(errors='replace')}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise _Unhealthy(f"{url}: {getattr(exc, 'reason', exc)}") from exc

    _probe(check, wait=wait)


@probe_app.command("tcp")
def probe_tcp(
    host: Annotated[str, typer.Argument(help="Host name or address.")],
    port: Annotated[int, typer.Argument(help="TCP port.")],
    timeout: Timeout = 5.0,
    wait: Wait = 0.0,
) -> None:
    """Open a TCP connection; healthy when something accepts it."""
    def check() -> str:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                return f"{host}:{port} accepts connections"
        except OSError as exc:
            raise _Unhealthy(f"{host}:{port}: {exc}") from exc

    _probe(check, wait=wait)


@probe_app.command("ready")
def probe_ready(
    path: Annotated[Path, typer.Argument(help="The process's GRIDWIRE_READY_FILE.")],
    wait: Wait = 0.0,
) -> None:
    """Healthy when a process's ready file exists: written once it serves (connected, subscribed),
    removed when it stops."""
    def check() -> str:
        try:
            return f"{path} (pid {path.read_text().strip()})"
        except OSError as exc:
            raise _Unhealthy(f"{path} does not exist: the process has not started serving, or has stopped") from exc

    _probe(check, wait=wait)
