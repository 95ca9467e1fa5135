"""Wrong credentials are refused with a clear, secret-free error; the invocation counter persists."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import SecretStr

from edge.dlms import (
    DlmsAuthenticationError,
    DlmsMeterAdapter,
    DlmsMeterConfig,
    DlmsMeterSimulator,
    InvocationCounterStore,
)
from edge.polling.errors import MeterAuthenticationError
from tests.edge.dlms.conftest import AUTH_KEY, BLOCK_KEY, PASSWORD


async def test_wrong_password_is_refused_naming_the_meter(lls_meter: DlmsMeterSimulator,
                                                          config_for: Callable[..., DlmsMeterConfig]) -> None:
    adapter = DlmsMeterAdapter(config=config_for(lls_meter, password=SecretStr("not-the-password")))
    with pytest.raises(DlmsAuthenticationError) as caught:
        await adapter.read_registers()
    message = str(caught.value)
    assert "meter-0042" in message
    assert "not-the-password" not in message and PASSWORD not in message
    assert isinstance(caught.value, MeterAuthenticationError)
    assert caught.value.transient is False
    assert caught.value.meter_id == "meter-0042"


@pytest.mark.parametrize("which", ["block_cipher_key", "authentication_key"])
async def test_wrong_key_is_refused_naming_the_meter(hls_meter: DlmsMeterSimulator, counters: InvocationCounterStore,
                                                     config_for: Callable[..., DlmsMeterConfig], which: str) -> None:
    wrong = "ff" * 16
    adapter = DlmsMeterAdapter(config=config_for(hls_meter, **{which: SecretStr(wrong)}), counters=counters)
    with pytest.raises(DlmsAuthenticationError) as caught:
        await adapter.read_registers()
    message = str(caught.value)
    assert "meter-0042" in message
    for secret in (wrong, BLOCK_KEY.hex(), AUTH_KEY.hex()):
        assert secret not in message.lower()


async def test_config_repr_hides_secrets(hls_meter: DlmsMeterSimulator,
                                         config_for: Callable[..., DlmsMeterConfig]) -> None:
    config = config_for(hls_meter)
    text = repr(config) + str(config) + config.model_dump_json()
    assert PASSWORD not in text and BLOCK_KEY.hex() not in text and AUTH_KEY.hex() not in text


async def test_invocation_counter_survives_a_new_client_instance(
        hls_meter: DlmsMeterSimulator, tmp_path: Path, config_for: Callable[..., DlmsMeterConfig]) -> None:
    path = tmp_path / "counters.sqlite"
    config = config_for(hls_meter)
    await DlmsMeterAdapter(config=config, counters=InvocationCounterStore(path)).read_clock()
    first_seen = hls_meter.guard.last_seen
    stored = InvocationCounterStore(path).get("meter-0042")
    assert first_seen is not None and stored > first_seen

    # A "restarted process": new store object and adapter on the same file.
    await DlmsMeterAdapter(config=config, counters=InvocationCounterStore(path)).read_clock()
    assert hls_meter.guard.last_seen is not None and hls_meter.guard.last_seen >= stored

    # Without the file the counter would start again at 0, and the meter refuses the replay.
    forgetful = DlmsMeterAdapter(config=config, counters=InvocationCounterStore(tmp_path / "fresh.sqlite"))
    with pytest.raises(DlmsAuthenticationError):
        await forgetful.read_clock()


def test_counter_store_never_hands_out_a_value_twice(tmp_path: Path) -> None:
    store = InvocationCounterStore(tmp_path / "c.sqlite")
    first = store.reserve("m")
    # A crash before commit: the next start is past the whole reserved block.
    second = InvocationCounterStore(tmp_path / "c.sqlite").reserve("m")
    assert second > first
    store.commit("m", second + 7)
    assert store.reserve("m") == second + 7
    assert store.get("other") == 0


def test_config_requires_secrets_for_the_mode() -> None:
    with pytest.raises(ValueError, match="needs a password"):
        DlmsMeterConfig(meter_id="m", host="h", security="lls")
    with pytest.raises(ValueError, match="block_cipher_key must be 16 bytes"):
        DlmsMeterConfig(meter_id="m", host="h", security="hls-gmac", block_cipher_key=SecretStr("00" * 8),
                        authentication_key=SecretStr("00" * 16))
