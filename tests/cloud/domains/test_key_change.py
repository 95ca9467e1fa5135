"""A DLMS key change through every layer: the API (function group UPDATE_KEY, OWNER only) makes
new keys pending in the registry, the domain and core send them, wrapped with the meter's master
key, to a real concentrator process, which sets them on the simulated meter and confirms them
with a new association; the registry then makes them active. Killed half-way (the meter took
the keys, the concentrator died before confirming), the restarted concentrator finds the meter
on the pending keys and the registry converges. No clear key in the database, the concentrator's
files or its log."""

from __future__ import annotations

import secrets
from pathlib import Path

from sqlalchemy import text
from typer.testing import CliRunner

from broker.sealing import KeyRing, new_key
from cloud.registry.secrets import DeviceSecrets
from edge.dlms import DlmsMeterSimulator, MeterModel, SecurityMode, ServerSecurity
from gridwire.cli import app
from tests.cloud.core.harness import METER, ORG_B, platform
from tests.cloud.domains.test_commands_kill import ready_concentrator
from tests.edge.concentrator.conftest import wait_for, write_config
from tests.fixtures.mosquitto import MosquittoServer

AUTH, BLOCK, MASTER = secrets.token_bytes(16), secrets.token_bytes(16), secrets.token_bytes(16)
CLOUD_RING = KeyRing.parse(new_key("cloud1"))


def meter() -> DlmsMeterSimulator:
    security = ServerSecurity(mode=SecurityMode.HLS_GMAC, block_cipher_key=BLOCK, authentication_key=AUTH,
                              master_key=MASTER)
    return DlmsMeterSimulator(model=MeterModel(), security=security, name="key-change")


def sealed_config(directory: Path, *, mqtt_port: int, meter_port: int) -> Path:
    entry = (f'[[meters]]\nprotocol = "dlms"\nmeter_id = "{METER}"\nhost = "127.0.0.1"\nport = {meter_port}\n'
             f'security = "hls-gmac"\nblock_cipher_key = "{BLOCK.hex()}"\nauthentication_key = "{AUTH.hex()}"\n'
             f'master_key = "{MASTER.hex()}"\nprofile = "smr-5"\ninterval_s = 3600\ntimeout_s = 20\n')
    config = write_config(directory, mqtt_port=mqtt_port, initial_hours=0, meters=[entry])
    (directory / "sealing.key").write_text(new_key("edge1") + "\n")
    config.write_text('secrets_key_file = "sealing.key"\n' + config.read_text())
    done = CliRunner().invoke(app, ["secrets", "seal-config", str(config)])
    assert done.exit_code == 0, done.output
    return config


async def register_keys(secrets_store: DeviceSecrets) -> None:
    for name, key in (("authentication_key", AUTH), ("block_cipher_key", BLOCK), ("master_key", MASTER)):
        await secrets_store.set(METER, name, key.hex())


async def database_text(stack) -> str:  # noqa: ANN001 - the harness's Stack
    async with stack.registry.engine.connect() as conn:
        rows = []
        for table in ("device_secret", "command", "functional_request"):
            rows += [str(tuple(row)) for row in (await conn.execute(text(f"SELECT * FROM {table}"))).all()]
    return "\n".join(rows)


def files_text(directory: Path) -> str:
    return "".join(p.read_bytes().hex() + p.read_text(errors="ignore") for p in directory.rglob("*") if p.is_file())


async def test_a_key_change_goes_through_every_layer_and_becomes_active_once_confirmed(
        mosquitto: MosquittoServer, tmp_path: Path) -> None:
    async with meter() as sim, platform(mosquitto, f"sqlite+aiosqlite:///{tmp_path / 'platform.db'}",
                                        concentrator=False, sealing=CLOUD_RING) as stack:
        store = DeviceSecrets(stack.registry.engine, CLOUD_RING)
        await register_keys(store)
        config = sealed_config(tmp_path / "conc", mqtt_port=mosquitto.port, meter_port=sim.port)
        ready = tmp_path / "conc" / "ready"
        proc = ready_concentrator(config, ready)
        proc.start()
        try:
            await wait_for(ready.exists, timeout=60, what="the concentrator to connect")
            # Another organisation may not change the keys, and nothing is made pending.
            refused = await stack.post(f"/v1/smartmetering/devices/{METER}/keyChange", org=ORG_B)
            assert refused.status_code == 403 and "UPDATE_KEY" in refused.json()["detail"]
            assert not any(s.pending for s in await store.list(METER))

            answer = await stack.post(f"/v1/smartmetering/devices/{METER}/keyChange")
            assert answer.status_code == 202, answer.text
            note = await stack.notification(answer.json()["correlationId"], timeout=60)
            assert note["status"] == "SUCCEEDED", note
        finally:
            proc.stop()
        assert not any(s.pending for s in await store.list(METER))
        new_auth = await store.reveal(METER, "authentication_key")
        new_block = await store.reveal(METER, "block_cipher_key")
        assert {new_auth, new_block}.isdisjoint({AUTH.hex(), BLOCK.hex()})
        assert sim.security.authentication_key.hex() == new_auth and sim.security.block_cipher_key.hex() == new_block
        assert sim.key_changes == 1
        at_rest = await database_text(stack) + files_text(tmp_path / "conc")
        for key in (new_auth, new_block, AUTH.hex(), BLOCK.hex(), MASTER.hex()):
            assert key not in at_rest and key.upper() not in at_rest


async def test_killed_after_the_meter_took_the_keys_the_change_converges_after_restart(
        mosquitto: MosquittoServer, tmp_path: Path) -> None:
    async with meter() as sim, platform(mosquitto, f"sqlite+aiosqlite:///{tmp_path / 'platform.db'}",
                                        concentrator=False, sealing=CLOUD_RING) as stack:
        store = DeviceSecrets(stack.registry.engine, CLOUD_RING)
        await register_keys(store)
        config = sealed_config(tmp_path / "conc", mqtt_port=mosquitto.port, meter_port=sim.port)
        ready = tmp_path / "conc" / "ready"
        proc = ready_concentrator(config, ready)
        proc.start()
        try:
            await wait_for(ready.exists, timeout=60, what="the concentrator to connect")
            warm = await stack.post(f"/v1/smartmetering/devices/{METER}/actualReads")
            assert (await stack.notification(warm.json()["correlationId"], timeout=60))["status"] == "SUCCEEDED"

            sim.hang_after_key_change = True  # the meter takes the keys; the confirmation never comes
            answer = await stack.post(f"/v1/smartmetering/devices/{METER}/keyChange")
            correlation = answer.json()["correlationId"]
            await wait_for(lambda: sim.key_changes == 1, timeout=60, what="the meter to take the new keys")
            proc.kill()
            ready.unlink(missing_ok=True)
            [pending] = {s.change_id for s in await store.list(METER) if s.pending}
            assert sim.security.authentication_key.hex() == await store.reveal(METER, "authentication_key",
                                                                               pending=True)
            sim.hang_after_key_change = False
            sim.unresponsive = False

            proc.start()  # the broker hands it the unconfirmed command again
            note = await stack.notification(correlation, timeout=90)
            assert note["status"] == "SUCCEEDED", note
            marker = await stack.post(f"/v1/smartmetering/devices/{METER}/actualReads")
            assert (await stack.notification(marker.json()["correlationId"], timeout=60))["status"] == "SUCCEEDED"
        finally:
            proc.stop()
        assert sim.key_changes == 1  # set once: the restarted concentrator found the meter on the new keys
        assert not any(s.pending for s in await store.list(METER))
        assert sim.security.authentication_key.hex() == await store.reveal(METER, "authentication_key")
        assert sim.security.block_cipher_key.hex() == await store.reveal(METER, "block_cipher_key")
        notes = [m for ms in stack.app_inbox.messages.values() for m in ms if correlation.encode() in m.payload]
        assert len(notes) == 1
        result = await stack.result("smartmetering", correlation)
        assert result["result"]["changeId"] == pending
        log = (tmp_path / "conc" / "concentrator.log").read_text()
        assert all(k.hex() not in log for k in (AUTH, BLOCK, MASTER))
        assert await store.reveal(METER, "authentication_key") not in log


async def test_a_change_left_pending_by_a_lost_answer_is_sent_again_and_converges(
        mosquitto: MosquittoServer, tmp_path: Path) -> None:
    """The meter took the keys but the platform never heard (the answer lost, the cloud restarted,
    the request timed out): the registry still holds the change pending. Asked again, the platform
    sends the same change; the concentrator finds the meter on its keys and confirms it."""
    async with meter() as sim, platform(mosquitto, f"sqlite+aiosqlite:///{tmp_path / 'platform.db'}",
                                        concentrator=False, sealing=CLOUD_RING) as stack:
        store = DeviceSecrets(stack.registry.engine, CLOUD_RING)
        await register_keys(store)
        change_id, keys = await store.begin_change(METER)
        sim.security = ServerSecurity(mode=SecurityMode.HLS_GMAC, master_key=MASTER,
                                      block_cipher_key=bytes.fromhex(keys["block_cipher_key"]),
                                      authentication_key=bytes.fromhex(keys["authentication_key"]))
        config = sealed_config(tmp_path / "conc", mqtt_port=mosquitto.port, meter_port=sim.port)
        ready = tmp_path / "conc" / "ready"
        proc = ready_concentrator(config, ready)
        proc.start()
        try:
            await wait_for(ready.exists, timeout=60, what="the concentrator to connect")
            answer = await stack.post(f"/v1/smartmetering/devices/{METER}/keyChange")
            note = await stack.notification(answer.json()["correlationId"], timeout=60)
            assert note["status"] == "SUCCEEDED", note
            assert note["result"]["changeId"] == change_id  # the same change, not a new one
        finally:
            proc.stop()
        assert sim.key_changes == 0  # nothing to transfer: the meter had them
        assert not any(s.pending for s in await store.list(METER))
        assert await store.reveal(METER, "authentication_key") == keys["authentication_key"]
