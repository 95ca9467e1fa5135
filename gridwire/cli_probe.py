"""``gridwire probe``: does a service answer? Exit 0 if so, 1 with the reason if not.

The health checks of ``docker-compose.yml`` and the operator's steps in ``docs/DEPLOY.md`` use
these, so a check reads the same wherever it runs. Standard library only: the edge-only install
has them too.
"""

from __future__ import annotations

import socket
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Annotated, Optional

import typer

probe_app = typer.Typer(no_args_is_help=True,
                        help="Health checks: exit 0 when a service answers, 1 with the reason when not.")

Timeout = Annotated[float, typer.Option(help="Seconds to wait for an answer.")]


def _fail(reason: str) -> None:
    typer.echo(f"unhealthy: {reason}", err=True)
    raise typer.Exit(1)


@probe_app.command("http")
def probe_http(
    url: Annotated[str, typer.Argument(help="The URL to GET, e.g. https://127.0.0.1:8443/healthz.")],
    ca_file: Annotated[Optional[Path], typer.Option(help="Verify an HTTPS server against this CA certificate "
                                                         "(default: the system's).")] = None,
    timeout: Timeout = 5.0,
) -> None:
    """GET a URL; healthy when it answers 2xx (an HTTPS server's certificate is verified)."""
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None) \
        if url.startswith("https:") else None
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as answer:  # noqa: S310 - http(s) only
            typer.echo(f"healthy: {url} answered {answer.status}")
    except urllib.error.HTTPError as exc:
        _fail(f"{url} answered {exc.code}: {exc.read()[:200].decode(errors='replace')}")
    except (urllib.error.URLError, OSError) as exc:
        _fail(f"{url}: {getattr(exc, 'reason', exc)}")


@probe_app.command("tcp")
def probe_tcp(
    host: Annotated[str, typer.Argument(help="Host name or address.")],
    port: Annotated[int, typer.Argument(help="TCP port.")],
    timeout: Timeout = 5.0,
) -> None:
    """Open a TCP connection; healthy when something accepts it."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            typer.echo(f"healthy: {host}:{port} accepts connections")
    except OSError as exc:
        _fail(f"{host}:{port}: {exc}")


@probe_app.command("ready")
def probe_ready(
    path: Annotated[Path, typer.Argument(help="The process's GRIDWIRE_READY_FILE.")],
) -> None:
    """Healthy when a process's ready file exists: written once it serves (connected, subscribed),
    removed when it stops."""
    if not path.is_file():
        _fail(f"{path} does not exist: the process has not started serving, or has stopped")
    typer.echo(f"healthy: {path} (pid {path.read_text().strip()})")
