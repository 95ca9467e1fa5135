"""``gridwire admin``: bootstrap a deployment (its first administrator) and make secrets.

``admin init`` brings the registry schema up to date, then creates the first platform
administrator organisation and an API key for it, and prints the key once (stdout, nothing
else on it, so a script can capture it). On a registry that has any organisation it refuses
with exit code 3 and changes nothing. ``admin secret`` prints a fresh random secret for
``GRIDWIRE_JWT_SECRET``.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Annotated

import typer

admin_app = typer.Typer(no_args_is_help=True, help="Bootstrap a deployment: its first administrator, secrets.")

# Exit status of a refused bootstrap: a script tells "already done" from "failed".
ALREADY_BOOTSTRAPPED = 3

UrlOption = Annotated[str, typer.Option("--url", envvar=["GRIDWIRE_DATABASE_URL", "GRIDWIRE_REGISTRY_URL"],
                                        help="The registry's database (SQLAlchemy async URL).")]


@admin_app.command("init")
def admin_init(
    url: UrlOption,
    org: Annotated[str, typer.Option("--org", help="The administrator organisation's identification.")] = "operator",
    name: Annotated[str, typer.Option("--name", help="Its display name.")] = "Platform operator",
    wait: Annotated[float, typer.Option("--wait", help="Seconds to keep trying while the database cannot be "
                                                      "reached (starting with it, e.g. in compose).")] = 0.0,
    exists_ok: Annotated[bool, typer.Option("--exists-ok", help="Exit 0 (still changing nothing) if the registry "
                                                                "was bootstrapped already: a one-shot run at "
                                                                "every start.")] = False,
) -> None:
    """Create the first platform administrator and its API key on an empty registry; print the
    key once. Refuses (exit 3, nothing changed) if the registry has any organisation."""
    from cloud.migrations.migrate import migrate_when_reachable
    from cloud.registry import OrganisationCreate
    from cloud.registry.apikeys import AlreadyBootstrapped, ApiKeys
    from cloud.registry.db import create_engine

    OrganisationCreate(identification=org, name=name)  # the API's rules for both, before touching anything

    async def bootstrap() -> str:
        await migrate_when_reachable(url, wait=wait)
        engine = create_engine(url)
        try:
            return (await ApiKeys(engine).bootstrap(org, name)).token
        finally:
            await engine.dispose()

    try:
        token = asyncio.run(bootstrap())
    except AlreadyBootstrapped as exc:
        typer.echo(f"admin init refused: {exc}; nothing was changed", err=True)
        raise typer.Exit(0 if exists_ok else ALREADY_BOOTSTRAPPED) from exc
    except Exception as exc:  # a CLI boundary: show the reason, exit non-zero
        typer.echo(f"admin init failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"platform administrator {org!r} created; its API key (shown once, keep it safe):", err=True)
    typer.echo(token)


@admin_app.command("secret")
def admin_secret() -> None:
    """Print a fresh random secret (64 characters) for GRIDWIRE_JWT_SECRET."""
    typer.echo(secrets.token_urlsafe(48))
