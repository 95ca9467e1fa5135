"""A DLMS key change on the simulated meter, two-phase (pending, then active once an association
with the new keys works), with what the concentrator keeps sealed on disk: done, sent again,
cut short after the meter took the keys (recovered on the next contact), refused, and a meter
that takes neither key."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from broker.sealing import KeyRing, new_key
from edge.commands.errors import CommandFailed, DeviceUnreachable, InvalidParameters
from edge.commands.key_change import attach_key_store
from edge.commands.meter_handlers import dlms_handlers
from edge.dlms import DlmsMeterAdapter, DlmsMeterConfig, DlmsMeterSimulator, InvocationCounterStore, MeterModel
from edge.dlms import SecurityMode, ServerSecurity
from edge.dlms.key_store import DlmsKeyStore
from edge.dlms.security_setup import wrap
from edge.polling import MeterPoller

AUTH, BLOCK, MASTER = bytes(range(16, 32)), bytes(range(16)), bytes(range(32, 48))
RING = KeyRing.parse(new_key("edge1"))


async def _discard(_reading: object) -> None:
    return None


class Rig:
    """One meter, its adapter with the key store attached, and its handlers (a concentrator's view)."""

    def __init__(self, sim: DlmsMeterSimulator, tmp_path: Path, *, timeout: float = 2.0) -> None:
        self.sim = sim
        self.config = DlmsMeterConfig(meter_id="E1", host="127.0.0.1", port=sim.port, security="hls-gmac",
                                      block_cipher_key=BLOCK.hex(), authentication_key=AUTH.hex(),
                                      master_key=MASTER.hex(), profile="smr-5", timeout_s=timeout)
        self.store = DlmsKeyStore(tmp_path / "keys.sqlite", RING)
        self.counters = InvocationCounterStore(tmp_path / "counters.sqlite")
        self.restart()

    def restart(self) -> None:
        """A fresh adapter from the config file's keys, as after a concentrator restart."""
        self.adapter = DlmsMeterAdapter(config=self.config, counters=self.counters)
        attach_key_store(self.adapter, self.store)
        self.poller = MeterPoller(sink=_discard)
        self.poller.add(self.adapter)
        self.change_keys = dlms_handlers(adapter=self.adapter, poller=self.poller, completeness=lambda _m, _d: {},
                                         key_store=self.store)["change_keys"]


def command(change_id: str, keys: dict[str, bytes], master: bytes = MASTER) -> dict:
    return {"changeId": change_id, "keys": {name: wrap(master, key).hex() for name, key in keys.items()}}


@pytest.fixture
async def sim():
    security = ServerSecurity(mode=SecurityMode.HLS_GMAC, block_cipher_key=BLOCK, authentication_key=AUTH,
                              master_key=MASTER)
    async with DlmsMeterSimulator(model=MeterModel(), security=security, name="E1") as meter:
        yield meter


async def test_a_key_change_is_set_confirmed_and_kept_sealed(sim, tmp_path) -> None:
    rig = Rig(sim, tmp_path)
    await rig.adapter.read_registers()
    new = {"authentication_key": secrets.token_bytes(16), "block_cipher_key": secrets.token_bytes(16)}
    answer = await rig.change_keys(command("0123456789abcdef", new))
    assert answer == {"changeId": "0123456789abcdef", "keys": ["authentication_key", "block_cipher_key"],
                      "confirmed": True}
    assert sim.key_changes == 1
    assert sim.security.authentication_key == new["authentication_key"]
    assert sim.security.block_cipher_key == new["block_cipher_key"]
    assert rig.store.active("E1") == ("0123456789abcdef", {k: v.hex() for k, v in new.items()})
    assert rig.store.pending("E1") == (None, {})
    at_rest = (tmp_path / "keys.sqlite").read_bytes() + b"".join(
        p.read_bytes() for p in tmp_path.glob("keys.sqlite-*"))
    assert all(key.hex().encode() not in at_rest for key in new.values())
    await rig.adapter.read_registers()  # the adapter reads with the new keys
    assert not await rig.adapter.accepts(rig.config)  # the meter refuses the old ones

    # Sent again (a redelivered command): confirmed, nothing sent to the meter.
    assert (await rig.change_keys(command("0123456789abcdef", new)))["confirmed"]
    assert sim.key_changes == 1
    rig.restart()  # a restarted concentrator reads with the keys the change left
    await rig.adapter.read_registers()


async def test_cut_short_after_the_meter_took_the_keys_the_next_contact_converges(sim, tmp_path) -> None:
    rig = Rig(sim, tmp_path, timeout=0.5)
    new = {"authentication_key": secrets.token_bytes(16), "block_cipher_key": secrets.token_bytes(16)}
    sim.hang_after_key_change = True  # the meter takes the keys, then its answers stop
    with pytest.raises(DeviceUnreachable):
        await rig.change_keys(command("00000000000000aa", new))
    assert sim.key_changes == 1 and rig.store.pending("E1")[0] == "00000000000000aa"
    assert rig.store.active("E1") == (None, {})

    sim.unresponsive = False
    rig.restart()  # the config's keys are the old ones: refused, then the pending keys work
    await rig.adapter.read_registers()
    assert rig.store.active("E1")[0] == "00000000000000aa" and rig.store.pending("E1") == (None, {})
    # The platform sends the change again: confirmed without another transfer.
    assert (await rig.change_keys(command("00000000000000aa", new)))["confirmed"]
    assert sim.key_changes == 1


async def test_cut_short_before_the_meter_took_them_the_change_is_done_when_sent_again(sim, tmp_path) -> None:
    rig = Rig(sim, tmp_path)
    new = {"authentication_key": secrets.token_bytes(16)}
    rig.store.begin("E1", "00000000000000bb", {k: v.hex() for k, v in new.items()})  # killed right after this
    rig.restart()
    await rig.adapter.read_registers()  # the active keys still work: nothing promoted
    assert rig.store.pending("E1")[0] == "00000000000000bb"
    assert (await rig.change_keys(command("00000000000000bb", new)))["confirmed"]
    assert sim.key_changes == 1 and sim.security.authentication_key == new["authentication_key"]
    assert sim.security.block_cipher_key == BLOCK


async def test_a_meter_that_takes_neither_key_fails_and_keeps_both(sim, tmp_path) -> None:
    rig = Rig(sim, tmp_path)
    await rig.adapter.read_registers()
    new = {"authentication_key": secrets.token_bytes(16)}
    sim.security = ServerSecurity(mode=SecurityMode.HLS_GMAC, block_cipher_key=BLOCK,
                                  authentication_key=secrets.token_bytes(16), master_key=MASTER)
    with pytest.raises(CommandFailed, match="accepts neither") as caught:
        await rig.change_keys(command("00000000000000cc", new))
    assert caught.value.code == "DEVICE_ERROR"
    assert rig.store.pending("E1")[0] == "00000000000000cc"  # kept, for the next contact


async def test_bad_key_change_commands_are_refused_and_change_nothing(sim, tmp_path) -> None:
    rig = Rig(sim, tmp_path)
    new = {"authentication_key": secrets.token_bytes(16)}
    with pytest.raises(InvalidParameters, match="not wrapped with meter E1's master key"):
        await rig.change_keys(command("00000000000000dd", new, master=secrets.token_bytes(16)))
    for params in ({"changeId": "x", "keys": {}}, {"changeId": "00000000000000dd", "keys": {"pin": "00" * 24}},
                   {"changeId": "00000000000000dd", "keys": {"authentication_key": "zz"}}):
        with pytest.raises(InvalidParameters):
            await rig.change_keys(params)
    assert sim.key_changes == 0 and rig.store.pending("E1") == (None, {})
    no_store = dlms_handlers(adapter=rig.adapter, poller=rig.poller, completeness=lambda _m, _d: {})["change_keys"]
    with pytest.raises(CommandFailed, match="no sealing key"):
        await no_store(command("00000000000000dd", new))


def test_keys_changed_through_the_platform_are_not_read_without_their_sealing_key(tmp_path, monkeypatch) -> None:
    from broker.sealing import SealingError
    from edge.config import ConcentratorConfig
    from edge.meter_set import MeterSet

    monkeypatch.delenv("GRIDWIRE_SECRETS_KEY", raising=False)
    key_file = tmp_path / "sealing.key"
    key_file.write_text(new_key("edge1") + "\n")
    raw = {"concentrator_id": "c1", "invocation_counters": str(tmp_path / "counters.sqlite"),
           "dlms_keys": str(tmp_path / "keys.sqlite"), "secrets_key_file": str(key_file),
           "meters": [{"protocol": "dlms", "meter_id": "E1", "host": "127.0.0.1", "security": "hls-gmac",
                       "block_cipher_key": BLOCK.hex(), "authentication_key": AUTH.hex(), "master_key": MASTER.hex()}]}
    DlmsKeyStore(tmp_path / "keys.sqlite", KeyRing.from_file(key_file)).begin("E1", "00000000000000ee",
                                                                             {"authentication_key": "ab" * 16})
    meters = MeterSet(config=ConcentratorConfig.model_validate(raw), sink=_discard, clock=lambda: None)
    assert meters.key_store is not None
    without = {k: v for k, v in raw.items() if k != "secrets_key_file"}
    with pytest.raises(SealingError, match="keys.sqlite holds DLMS keys changed through the platform, sealed, but "
                                           "there is no sealing key"):
        MeterSet(config=ConcentratorConfig.model_validate(without), sink=_discard, clock=lambda: None)
    key_file.write_text(new_key("edge1") + "\n")  # another key under the same id
    with pytest.raises(SealingError, match="meter:E1:authentication_key: sealed value does not open"):
        MeterSet(config=ConcentratorConfig.model_validate(raw), sink=_discard, clock=lambda: None)
