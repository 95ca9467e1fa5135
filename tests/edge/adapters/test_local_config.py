"""The local listener's config is secure by default, and its adapters' accounts are fenced to their meters."""

from __future__ import annotations

import re

import pytest

from broker.accounts import account_grants
from edge.config import ConfigError, load_config
from edge.local_broker import local_accounts
from tests.edge.adapters.conftest import write_local_config


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
