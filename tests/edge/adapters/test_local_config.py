"""The local listener's config is secure by default, and its adapters' accounts are fenced to their meters."""

from __future__ import annotations

import getpass
import re
import shutil

import pytest

from broker import topics
from broker.accounts import account_grants
from broker.mosquitto_conf import write_broker_files
from broker.pki import CertificateAuthority
from broker.session import ConnectError, MqttSession, NegativeAckError, TlsSettings
from edge.config import ConfigError, load_config
from edge.local_broker import local_accounts, local_broker_config
from gridwire.procs import ManagedProcess
from tests.edge.adapters.conftest import PASSWORDS, adapter_yaml, write_local_config
from tests.factories import payload
from tests.fixtures.procs import free_port


def test_adapter_accounts_may_publish_only_for_their_meters(tmp_path):
    config = load_config(write_local_config(tmp_path, mqtt_port=1883, local_port=1884))
    assert config.local is not None
    accounts = {a.username: account_grants(a) for a in local_accounts(config.local)}
    assert accounts["cupboard"] == [("read", "adapter/cupboard/ack"), ("write", "smartMeterMessage/gas-a/+"),
                                    ("write", "smartMeterMessage/meter-a/+")]
    assert accounts["heat"] == [("read", "adapter/heat/ack"), ("write", "smartMeterMessage/meter-h/+")]
    assert accounts["concentrator"] == [("read", "smartMeterMessage/+/+"), ("write", "adapter/+/ack")]


@pytest.mark.parametrize(("local", "message"), [
    ('host = "192.0.2.10"', "not on loopback: give ca_file (TLS)"),
    ('tls_port = 8883', "tls_port needs tls_ca_file, tls_cert_file and tls_key_file"),
    ('tls_bind = "0.0.0.0"', "tls_bind needs tls_port"),
])
def test_a_listener_beyond_loopback_must_use_tls(tmp_path, local, message):
    path = write_local_config(tmp_path, mqtt_port=1883, local_port=1884)
    path.write_text(path.read_text().replace('[local]\nhost = "127.0.0.1"\n', f'[local]\n{local}\n'))
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(path)


async def test_adapters_on_the_network_reach_the_generated_broker_over_tls_only(tmp_path):
    """The generated local broker: plain on loopback only; on the network a TLS listener, where an
    adapter with the CA publishes for its meter and a client without TLS gets no connection."""
    pki = tmp_path / "pki"
    ca = CertificateAuthority.create(pki)
    server = ca.issue_server(pki, stem="local-broker")
    plain, tls = free_port(), free_port()
    path = write_local_config(tmp_path / "concentrator", mqtt_port=1883, local_port=plain)
    path.write_text(path.read_text().replace(
        "reconnect_max = 1\n\n[[local.adapters]]",
        f'reconnect_max = 1\ntls_bind = "0.0.0.0"\ntls_port = {tls}\ntls_ca_file = "{ca.cert_file}"\n'
        f'tls_cert_file = "{server.cert_file}"\ntls_key_file = "{server.key_file}"\n\n[[local.adapters]]', 1))
    config = load_config(path)
    assert config.local is not None
    broker = local_broker_config(config.local, data_dir=tmp_path / "broker" / "data", run_as=getpass.getuser())
    conf = write_broker_files(broker, tmp_path / "broker")
    text = conf.read_text()
    assert f"listener {plain} 127.0.0.1\n" in text and f"listener {tls} 0.0.0.0\n" in text
    mosquitto = ManagedProcess(argv=[shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(conf)],
                               log=tmp_path / "broker" / "mosquitto.log", port=tls)
    mosquitto.start()
    try:
        adapter = MqttSession(client_id="cupboard-tls", host="127.0.0.1", port=tls, username="cupboard",
                              password=PASSWORDS["cupboard"], tls=TlsSettings(ca_file=str(ca.cert_file)))
        async with adapter:
            await adapter.publish(topics.local_meter_message("meter-a", "meterReading"), payload("meter-a", 0), qos=1)
        cleartext = MqttSession(client_id="cupboard-plain", host="127.0.0.1", port=tls, username="cupboard",
                                password=PASSWORDS["cupboard"], connect_timeout=3)
        with pytest.raises(ConnectError):
            await cleartext.connect()
        await cleartext.close()
    finally:
        mosquitto.stop()


def test_the_example_configs_are_valid(tmp_path, monkeypatch):
    """config/adapter.example.toml loads; the commented [local] of concentrator.example.toml,
    uncommented, gives a concentrator config whose local broker has the adapter's account."""
    from pathlib import Path

    from edge.config import P1Meter
    from edge.standalone import load_standalone_config

    root = Path(__file__).parents[3] / "config"
    config = load_standalone_config(root / "adapter.example.toml")
    assert isinstance(config.meter, P1Meter) and config.username == "cupboard"
    assert config.listener.ca_file == root / "tls" / "local-ca.pem"
    example = (root / "concentrator.example.toml").read_text()
    local = "\n".join(line.removeprefix("# ") for line in example[example.index("# [local]"):].splitlines()
                      if line.startswith("# "))
    (tmp_path / "adapters").mkdir()
    (tmp_path / "adapters" / "cupboard.yaml").write_text(adapter_yaml("meter-cupboard"))
    (tmp_path / "c.toml").write_text(f'concentrator_id = "c-1"\n{local}\n')
    monkeypatch.setenv("GRIDWIRE_LOCAL_PASSWORD", "x")
    monkeypatch.setenv("GRIDWIRE_ADAPTER_CUPBOARD_PASSWORD", "y")
    concentrator = load_config(tmp_path / "c.toml")
    assert concentrator.local is not None and concentrator.local.tls_port == 8884
    accounts = {a.username: a.meters for a in local_accounts(concentrator.local)}
    assert accounts == {"concentrator": (), "cupboard": ("meter-cupboard",)}


def test_an_adapter_beyond_loopback_must_use_tls(tmp_path):
    from edge.standalone import load_standalone_config

    path = tmp_path / "adapter.toml"
    path.write_text('adapter_id = "a"\n[listener]\nhost = "192.0.2.1"\n'
                    '[meter]\nprotocol = "p1"\nport = "loop://"\nadapter_config = "a.yaml"\n')
    with pytest.raises(ConfigError, match=re.escape("not on loopback: give ca_file (TLS)")):
        load_standalone_config(path)


def test_concentrator_check_reads_the_adapters_configs(tmp_path):
    from typer.testing import CliRunner

    from gridwire.cli import app

    path = write_local_config(tmp_path, mqtt_port=1883, local_port=1884)
    done = CliRunner().invoke(app, ["concentrator", "check", str(path)])
    assert done.exit_code == 0 and "2 external adapter(s) for 3 meter(s): ok" in done.output
    (tmp_path / "heat.yaml").write_text(adapter_yaml("meter-a"))  # claims the cupboard's meter
    done = CliRunner().invoke(app, ["concentrator", "check", str(path)])
    assert done.exit_code == 2 and "meter meter-a belongs to adapters cupboard and heat" in done.output


def test_an_adapter_taken_out_of_the_config_loses_its_account(tmp_path):
    import json

    from typer.testing import CliRunner

    from gridwire.cli import app

    path = write_local_config(tmp_path, mqtt_port=1883, local_port=1884)
    out = tmp_path / "local-broker"

    def usernames() -> set[str]:
        done = CliRunner().invoke(app, ["concentrator", "local-broker", str(path), "--out", str(out)])
        assert done.exit_code == 0, done.output
        return {c["username"] for c in json.loads((out / "dynamic-security.json").read_text())["clients"]}

    assert usernames() == {"concentrator", "cupboard", "heat"}
    text = path.read_text()
    path.write_text(text[:text.index('[[local.adapters]]\nadapter_id = "heat"')])
    assert usernames() == {"concentrator", "cupboard"}


async def test_adapters_subscribe_only_to_their_own_acknowledgements(tmp_path):
    """On the generated local broker (real Mosquitto, its dynamic security file), an adapter reads
    its own acknowledgements and is refused (SUBACK 0x87) every other filter: another adapter's
    acknowledgements, any meter's messages, everything, shared or not."""
    plain = free_port()
    config = load_config(write_local_config(tmp_path / "concentrator", mqtt_port=1883, local_port=plain))
    assert config.local is not None
    conf = write_broker_files(local_broker_config(config.local, data_dir=tmp_path / "broker" / "data",
                                                  run_as=getpass.getuser()), tmp_path / "broker")
    mosquitto = ManagedProcess(argv=[shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(conf)],
                               log=tmp_path / "broker" / "mosquitto.log", port=plain)
    mosquitto.start()

    async def nothing(_message: object) -> None:
        return None

    try:
        adapter = MqttSession(client_id="cupboard-subs", host="127.0.0.1", port=plain, username="cupboard",
                              password=PASSWORDS["cupboard"], session_expiry=0)
        async with adapter:
            await adapter.subscribe(topics.adapter_ack("cupboard"), nothing)
            for refused_filter in ("adapter/heat/ack", "adapter/+/ack", "adapter/#", "$share/g/adapter/heat/ack",
                                   "smartMeterMessage/meter-h/+", "smartMeterMessage/meter-a/+",
                                   "smartMeterMessage/+/+", "#", "$CONTROL/#"):
                with pytest.raises(NegativeAckError) as refused:
                    await adapter.subscribe(refused_filter, nothing)
                assert refused.value.reason_code == 0x87, refused_filter
    finally:
        mosquitto.stop()
