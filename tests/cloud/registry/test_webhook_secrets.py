"""Organisations' webhook secrets at rest, on SQLite and PostgreSQL: written sealed (the column
never holds the secret), refused with no sealing key (nothing changed), a ring that cannot open
them or one held in clear refused at start, rotation through a ring of two keys, and the
migration that widens the column keeping what the registry held."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from broker.sealing import KeyRing, SealingError, new_key
from cloud.migrations import migrate
from cloud.registry import OrganisationCreate, OrganisationUpdate, Registry, webhook_secrets
from cloud.registry.secrets import NoSealingKey
from tests.cloud.registry.conftest import SEALING

SECRET = "a-webhook-secret-of-some-length"


async def stored(registry: Registry, org: str) -> str | None:
    async with registry.engine.connect() as conn:
        return (await conn.execute(text("SELECT webhook_secret FROM organisation WHERE identification = :o"),
                                   {"o": org})).scalar_one()


async def test_a_webhook_secret_is_written_sealed_and_opens_only_for_its_organisation(registry: Registry) -> None:
    added = await registry.add_organisation(OrganisationCreate(identification="org-a", name="A",
                                                               webhook_url="https://hooks.example.org/a",
                                                               webhook_secret=SECRET))
    assert added.has_webhook_secret and SECRET not in added.model_dump_json()
    at_rest = await stored(registry, "org-a")
    assert at_rest is not None and at_rest.startswith("sealed:v1:test:") and SECRET not in at_rest
    assert webhook_secrets.reveal(SEALING, "org-a", at_rest) == SECRET
    with pytest.raises(SealingError, match="organisation:org-b:webhook_secret"):
        webhook_secrets.reveal(SEALING, "org-b", at_rest)  # copied to another organisation: does not open

    # The longest secret the API takes still fits once sealed (a 255-character column did not).
    longest = "x" * 255
    changed = await registry.update_organisation("org-a", OrganisationUpdate(webhook_secret=longest))
    assert changed.has_webhook_secret
    at_rest = await stored(registry, "org-a")
    assert at_rest is not None and len(at_rest) > 255 and longest not in at_rest
    assert webhook_secrets.reveal(SEALING, "org-a", at_rest) == longest


async def test_with_no_sealing_key_a_webhook_secret_is_refused_and_nothing_changes(registry: Registry) -> None:
    unsealed = Registry(engine=registry.engine)
    with pytest.raises(NoSealingKey, match="GRIDWIRE_SECRETS_KEY"):
        await unsealed.add_organisation(OrganisationCreate(identification="org-n", name="N", webhook_secret=SECRET))
    assert [o.identification for o in await registry.list_organisations()] == []
    await unsealed.add_organisation(OrganisationCreate(identification="org-n", name="N"))  # no secret: fine
    await registry.update_organisation("org-n", OrganisationUpdate(webhook_secret=SECRET))
    before = await stored(registry, "org-n")
    with pytest.raises(NoSealingKey):
        await unsealed.update_organisation("org-n", OrganisationUpdate(name="renamed", webhook_secret="z" * 20))
    assert await stored(registry, "org-n") == before
    assert (await registry.get_organisation("org-n")).name == "N"
    # Clearing a secret needs no key.
    cleared = await unsealed.update_organisation("org-n", OrganisationUpdate(webhook_secret=None))
    assert not cleared.has_webhook_secret and await stored(registry, "org-n") is None


async def test_start_is_refused_with_no_key_another_key_or_a_secret_in_clear(registry: Registry) -> None:
    assert await webhook_secrets.check_ring(registry.engine, None) == 0  # nothing held: no key needed
    await registry.add_organisation(OrganisationCreate(identification="org-a", name="A", webhook_secret=SECRET))
    assert await webhook_secrets.check_ring(registry.engine, SEALING) == 1
    with pytest.raises(SealingError, match="holds 1 sealed webhook secret\\(s\\) but GRIDWIRE_SECRETS_KEY is not set"):
        await webhook_secrets.check_ring(registry.engine, None)
    with pytest.raises(SealingError, match="does not open with key 'test'"):
        await webhook_secrets.check_ring(registry.engine, KeyRing.parse(new_key("test")))
    async with registry.engine.begin() as conn:  # as an older release stored it
        await conn.execute(text("UPDATE organisation SET webhook_secret = :s"), {"s": SECRET})
    for ring in (SEALING, None):
        with pytest.raises(SealingError, match="organisation:org-a:webhook_secret is in clear: run `gridwire "
                                               "secrets reseal`"):
            await webhook_secrets.check_ring(registry.engine, ring)


async def test_rotation_keeps_old_values_readable_and_reseal_moves_them_to_the_new_key(registry: Registry) -> None:
    await registry.add_organisation(OrganisationCreate(identification="org-a", name="A", webhook_secret=SECRET))
    await registry.add_organisation(OrganisationCreate(identification="org-b", name="B"))
    async with registry.engine.begin() as conn:  # one in clear, from before sealing
        await conn.execute(text("UPDATE organisation SET webhook_secret = 'clear-secret-of-org-b' "
                                "WHERE identification = 'org-b'"))
    new = KeyRing.parse(new_key("new"))
    ring = KeyRing(new.keys + SEALING.keys)  # the new key first, the old one after it
    assert webhook_secrets.reveal(ring, "org-a", await stored(registry, "org-a")) == SECRET
    assert await webhook_secrets.reseal(registry.engine, ring) == 2
    assert await webhook_secrets.reseal(registry.engine, ring) == 0
    assert await webhook_secrets.check_ring(registry.engine, new) == 2  # the old key may go
    for org, clear in (("org-a", SECRET), ("org-b", "clear-secret-of-org-b")):
        value = await stored(registry, org)
        assert value is not None and value.startswith("sealed:v1:new:")
        assert webhook_secrets.reveal(new, org, value) == clear


async def test_the_migration_keeps_organisations_their_secrets_and_what_cascades_from_them(
        registry_url: str) -> None:
    await migrate(registry_url, revision="0015_monitoring_events_notified")
    async with Registry(url=registry_url) as registry:
        async with registry.engine.begin() as conn:
            await conn.execute(text(
                "INSERT INTO organisation (identification, name, enabled, role, webhook_secret, created_at, "
                "updated_at) VALUES ('org-a', 'A', true, 'USER', :s, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"),
                {"s": SECRET})
            await conn.execute(text(
                "INSERT INTO device (identification, device_type, protocol, state, created_at, updated_at, "
                "comm_success_count, comm_failure_count, consecutive_failures) VALUES ('m-1', 'SMART_METER', "
                "'DLMS', 'REGISTERED', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 0, 0, 0)"))
            await conn.execute(text(
                "INSERT INTO device_authorisation (device_id, organisation_id, function_group, created_at) "
                "SELECT d.id, o.id, 'OWNER', CURRENT_TIMESTAMP FROM device d, organisation o"))
        await migrate(registry_url)
        assert await stored(registry, "org-a") == SECRET  # kept as it was, for `gridwire secrets reseal`
        assert await registry.meters_for_org("org-a") == {"m-1"}  # no cascade wiped the authorisation
        assert await webhook_secrets.reseal(registry.engine, SEALING) == 1
        assert webhook_secrets.reveal(SEALING, "org-a", await stored(registry, "org-a")) == SECRET
