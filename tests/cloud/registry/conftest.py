"""A migrated registry on each backend (SQLite file and a fresh PostgreSQL database), with a
sealing key ring as a deployment has (webhook secrets are refused without one)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from broker.sealing import KeyRing, new_key
from cloud.migrations import migrate
from cloud.registry import OrganisationCreate, PlatformRole, Registry

SEALING = KeyRing.parse(new_key("test"))


@pytest.fixture
async def registry(registry_url: str) -> AsyncIterator[Registry]:
    """A Registry over a database brought up by the real migrations (never create_all)."""
    await migrate(registry_url)
    async with Registry(url=registry_url, sealing=SEALING) as reg:
        yield reg


@pytest.fixture
async def orgs(registry: Registry) -> dict[str, str]:
    """Three organisations: a utility, an app vendor and a platform administrator."""
    for ident, name, role in (("utility", "City Utility", PlatformRole.USER),
                              ("app", "Energy App", PlatformRole.USER),
                              ("ops", "Platform Ops", PlatformRole.ADMIN)):
        await registry.add_organisation(OrganisationCreate(identification=ident, name=name, role=role))
    return {"utility": "utility", "app": "app", "ops": "ops"}
