"""External adapters rig: a concentrator config with a local listener, its adapters' OMDP
configs, and the concentrator's own Mosquitto generated from that config (a second broker
beside the cloud's)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.config import ConcentratorConfig, load_config
from edge.local_broker import local_accounts
from gridwire.services import LocalMosquitto
from tests.fixtures.procs import free_port

# Two adapters on other devices: one speaks for a meter and its gas sub-meter, one for a heat meter.
ADAPTERS = {"cupboard": ("meter-a", "gas-a"), "heat": ("meter-h",)}
PASSWORDS = {"cupboard": "cupboard-pw-7Rk", "heat": "heat-pw-2Lq"}
LOCAL_PASSWORD = "local-conc-pw-9Xe"


def adapter_yaml(meter: str, sub: str | None = None) -> str:
    text = f"meterIndividualId: {meter}\nphysicalMeterClass: ELECTRICITY\nprotocol: p1\n"
    if sub is not None:
        text += f"subMeters:\n  - {{channel: 1, meterIndividualId: {sub}, physicalMeterClass: GAS}}\n"
    return text


def write_local_config(directory: Path, *, mqtt_port: int, local_port: int, meters: str = "",
                       confirm_timeout: float = 5) -> Path:
    """A concentrator config (no meters of its own by default) with the local listener's adapters."""
    directory.mkdir(parents=True, exist_ok=True)
    for adapter, meter_ids in ADAPTERS.items():
        (directory / f"{adapter}.yaml").write_text(adapter_yaml(*meter_ids))
    adapters = "".join(
        f'[[local.adapters]]\nadapter_id = "{a}"\nadapter_config = "{a}.yaml"\npassword = "{PASSWORDS[a]}"\n\n'
        for a in ADAPTERS)
    path = directory / "concentrator.toml"
    path.write_text(
        'concentrator_id = "conc-1"\noutbox = "outbox.sqlite"\nstate = "state.sqlite"\n'
        f'invocation_counters = "counters.sqlite"\nstatus_interval = 0.5\nconfirm_timeout = {confirm_timeout}\n\n'
        f'[broker]\nhost = "127.0.0.1"\nport = {mqtt_port}\nusername = "conc-1"\npassword = "conc-1-pw"\n'
        'reconnect_max = 1\n\n'
        f'[local]\nhost = "127.0.0.1"\nport = {local_port}\nusername = "concentrator"\n'
        f'password = "{LOCAL_PASSWORD}"\nreconnect_max = 1\n\n' + adapters + meters)
    return path


def start_local_broker(directory: Path, config: ConcentratorConfig) -> LocalMosquitto:
    assert config.local is not None
    server = LocalMosquitto(directory=directory, port=config.local.port, accounts=local_accounts(config.local))
    server.start()
    return server


@pytest.fixture
def local_broker(tmp_path, mosquitto) -> Iterator[tuple[Path, LocalMosquitto]]:
    """A concentrator config for the cloud broker ``mosquitto``, and its local broker, running."""
    config = write_local_config(tmp_path / "concentrator", mqtt_port=mosquitto.port, local_port=free_port())
    server = start_local_broker(tmp_path / "local-broker", load_config(config))
    try:
        yield config, server
    finally:
        server.stop()
