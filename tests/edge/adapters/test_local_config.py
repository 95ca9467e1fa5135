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
from broker.session import ConnectError, MqttSession, TlsSettings
from edge.config import ConfigError, load_config
from edge.local_broker import local_accounts, local_broker_config
from gridwire.procs import ManagedProcess
from tests.edge.adapters.conftest import PASSWORDS, write_local_config
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
