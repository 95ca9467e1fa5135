"""Device secrets in the registry: sealed in the database (never the clear text), listed without
values, refused without or with the wrong sealing key, resealed on rotation, and the two
phases of a key change (pending beside active, made active once confirmed, sent again while
pending)."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import text

from broker.sealing import KeyRing, SealingError, new_key
from cloud.registry import DeviceCreate, DeviceType, Protocol, Registry
from cloud.registry.secrets import DeviceSecrets, InvalidSecret, NoSealingKey

AUTH = "00112233445566778899aabbccddeeff"
BLOCK = "ffeeddccbbaa99887766554433221100"
MASTER = "0f0e0d0c0b0a09080706050403020100"
RING = KeyRing.parse(new_key("k1"))


async def meter(registry: Registry, ident: str = "E0001") -> str:
    await registry.create_device(DeviceCreate(identification=ident, device_type=DeviceType.SMART_METER,
                                              protocol=Protocol.DLMS))
    return ident


async def stored(registry: Registry) -> list[str]:
    async with registry.engine.connect() as conn:
        rows = (await conn.execute(text("SELECT active, pending FROM device_secret"))).all()
    return [value for row in rows for value in row if value is not None]


async def test_secrets_are_sealed_in_the_database_and_listed_without_values(registry: Registry, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    device = await meter(registry)
    secrets = DeviceSecrets(registry.engine, RING)
    for name, value in (("authentication_key", AUTH), ("block_cipher_key", BLOCK), ("password", "hunter2-lls")):
        public = await secrets.set(device, name, value)
        assert public.key_id == "k1" and not public.pending
    values = await stored(registry)
    assert len(values) == 3 and all(v.startswith("sealed:v1:k1:") for v in values)
    for clear in (AUTH, BLOCK, "hunter2-lls", AUTH.upper()):
        assert all(clear not in v for v in values)
        assert clear not in caplog.text
    listed = await secrets.list(device)
    assert [s.name for s in listed] == ["authentication_key", "block_cipher_key", "password"]
    assert all(AUTH not in s.model_dump_json() for s in listed)
    assert await secrets.reveal(device, "password") == "hunter2-lls"


async def test_bad_values_and_no_key_are_refused_and_change_nothing(registry: Registry) -> None:
    device = await meter(registry)
    secrets = DeviceSecrets(registry.engine, RING)
    with pytest.raises(InvalidSecret, match="authentication_key must be 32 hex digits"):
        await secrets.set(device, "authentication_key", "not-a-key")
    with pytest.raises(InvalidSecret, match="unknown secret 'pin'"):
        await secrets.set(device, "pin", "1234")
    with pytest.raises(NoSealingKey, match="GRIDWIRE_SECRETS_KEY"):
        await DeviceSecrets(registry.engine, None).set(device, "password", "pw-123")
    assert await stored(registry) == []


async def test_the_wrong_key_or_no_key_is_refused_at_start_while_secrets_are_stored(registry: Registry) -> None:
    device = await meter(registry)
    assert await DeviceSecrets(registry.engine, None).check_ring() == 0  # nothing stored: no key needed
    await DeviceSecrets(registry.engine, RING).set(device, "authentication_key", AUTH)
    assert await DeviceSecrets(registry.engine, RING).check_ring() == 1
    with pytest.raises(SealingError, match="holds 1 sealed device secret\\(s\\) but GRIDWIRE_SECRETS_KEY is not set"):
        await DeviceSecrets(registry.engine, None).check_ring()
    with pytest.raises(SealingError, match="device:E0001:authentication_key: sealed value does not open with key 'k1'"):
        await DeviceSecrets(registry.engine, KeyRing.parse(new_key("k1"))).check_ring()
    with pytest.raises(SealingError, match="sealed with key 'k1', which the sealing key ring \\(k9\\) does not hold"):
        await DeviceSecrets(registry.engine, KeyRing.parse(new_key("k9"))).check_ring()


async def test_reseal_seals_clear_values_and_rotates_to_the_first_key(registry: Registry) -> None:
    device = await meter(registry)
    await DeviceSecrets(registry.engine, RING).set(device, "authentication_key", AUTH)
    async with registry.engine.begin() as conn:  # a secret written in clear before sealing existed
        device_id = (await conn.execute(text("SELECT id FROM device WHERE identification = 'E0001'"))).scalar_one()
        await conn.execute(text("INSERT INTO device_secret (device_id, name, active, updated_at) "
                                "VALUES (:d, 'password', 'clear-pw-1', CURRENT_TIMESTAMP)"), {"d": device_id})
    with pytest.raises(SealingError, match="device:E0001:password is in clear"):
        await DeviceSecrets(registry.engine, RING).check_ring()
    new = KeyRing.parse(new_key("k2"))
    both = KeyRing((new.keys[0], RING.keys[0]))
    assert await DeviceSecrets(registry.engine, both).reseal() == 2
    values = await stored(registry)
    assert all(v.startswith("sealed:v1:k2:") for v in values) and "clear-pw-1" not in "".join(values)
    only_new = DeviceSecrets(registry.engine, new)
    assert await only_new.check_ring() == 2
    assert await only_new.reveal(device, "authentication_key") == AUTH
    assert await only_new.reveal(device, "password") == "clear-pw-1"
    assert await only_new.reseal() == 0


async def test_a_key_change_is_pending_until_confirmed_and_sent_again_while_pending(registry: Registry) -> None:
    device = await meter(registry)
    secrets = DeviceSecrets(registry.engine, RING)
    await secrets.set(device, "authentication_key", AUTH)
    with pytest.raises(Exception, match="no master_key"):
        await secrets.begin_change(device)
    await secrets.set(device, "master_key", MASTER)
    with pytest.raises(Exception, match="no block_cipher_key"):
        await secrets.begin_change(device)
    await secrets.set(device, "block_cipher_key", BLOCK)

    change, keys = await secrets.begin_change(device)
    assert set(keys) == {"authentication_key", "block_cipher_key"} and AUTH not in keys.values()
    assert await secrets.reveal(device, "authentication_key") == AUTH  # the old key stays active
    assert await secrets.reveal(device, "authentication_key", pending=True) == keys["authentication_key"]
    at_rest = "".join(await stored(registry))
    assert all(k not in at_rest for k in keys.values())
    assert {s.name: (s.pending, s.change_id) for s in await secrets.list(device)} == {
        "authentication_key": (True, change), "block_cipher_key": (True, change), "master_key": (False, None)}
    with pytest.raises(Exception, match="is pending"):
        await secrets.set(device, "authentication_key", BLOCK)

    # Asked again (a change that failed half-way): the same change, the same keys.
    assert await secrets.begin_change(device) == (change, keys)

    # Confirmation needs no sealing key: the sealed text moves as it is.
    assert await DeviceSecrets(registry.engine, None).complete_change(device, change)
    assert not await secrets.complete_change(device, change)  # a repeated confirmation changes nothing
    assert await secrets.reveal(device, "authentication_key") == keys["authentication_key"]
    assert await secrets.reveal(device, "block_cipher_key") == keys["block_cipher_key"]
    assert not any(s.pending for s in await secrets.list(device))
    again, fresh = await secrets.begin_change(device, ("authentication_key",))
    assert again != change and set(fresh) == {"authentication_key"}
