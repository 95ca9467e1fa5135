"""Provisioning sets only the fields it owns in a config that exists: comments, meters and
other keys stay as they were, missing keys (or a missing [broker] table) are added, and a
second run changes nothing."""

from __future__ import annotations

import tomllib

from edge.provision import set_owned_fields

OWNED: dict[str, str | int] = {"concentrator_id": "cab-1", "broker.host": "mqtt.example.net", "broker.port": 8883,
                               "broker.ca_file": "/etc/gridwire/tls/ca.pem",
                               "broker.cert_file": "/etc/gridwire/tls/concentrator.pem",
                               "broker.key_file": "/etc/gridwire/tls/concentrator.key"}

WITH_METERS = '''# the installer's notes
concentrator_id = "CHANGE-ME"  # filled in by provision
outbox = "/var/lib/gridwire/outbox.sqlite"

[broker]
host = "CHANGE-ME.example.net"
port = 8883
ca_file = "tls/ca.pem"
session_expiry = 3600

[[meters]]
protocol = "p1"
port = "/dev/ttyUSB0"
host = "not the broker's"
'''


def test_only_owned_fields_change_and_missing_ones_are_added() -> None:
    text, changed = set_owned_fields(WITH_METERS, OWNED)
    parsed = tomllib.loads(text)
    assert parsed["concentrator_id"] == "cab-1"
    assert parsed["broker"] == {"host": "mqtt.example.net", "port": 8883, "ca_file": "/etc/gridwire/tls/ca.pem",
                                "cert_file": "/etc/gridwire/tls/concentrator.pem",
                                "key_file": "/etc/gridwire/tls/concentrator.key", "session_expiry": 3600}
    assert parsed["meters"] == [{"protocol": "p1", "port": "/dev/ttyUSB0", "host": "not the broker's"}]
    assert parsed["outbox"] == "/var/lib/gridwire/outbox.sqlite"
    assert "# the installer's notes" in text
    assert sorted(changed) == sorted(set(OWNED) - {"broker.port"})
    assert set_owned_fields(text, OWNED) == (text, [])


def test_a_config_without_broker_table_gets_one() -> None:
    text, changed = set_owned_fields('outbox = "o.sqlite"\n\n[[meters]]\nprotocol = "p1"\nport = "/dev/ttyS0"\n',
                                     OWNED)
    parsed = tomllib.loads(text)
    assert parsed["concentrator_id"] == "cab-1" and parsed["broker"]["port"] == 8883
    assert parsed["meters"][0]["port"] == "/dev/ttyS0"
    assert sorted(changed) == sorted(OWNED)
