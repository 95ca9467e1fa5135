"""One set of cloud settings: the sections every process shares, read from GRIDWIRE_* variables."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from cloud.platform import PROCESSES, PlatformSettings
from cloud.settings import DEFAULT_DATABASE_URL, ApiSettings, CloudSettings, MqttSettings


def test_sections_are_read_from_their_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"GRIDWIRE_MQTT_HOST": "broker.example", "GRIDWIRE_MQTT_PORT": "8884", "GRIDWIRE_MQTT_USERNAME": "cloud-2",
           "GRIDWIRE_MQTT_PASSWORD": "pw", "GRIDWIRE_MQTT_CLIENT_ID": "ingest-1", "GRIDWIRE_MQTT_CA_FILE": "/tls/ca.pem",
           "GRIDWIRE_MQTT_INFLIGHT": "7", "GRIDWIRE_DATABASE_URL": "postgresql+asyncpg://gw@db/gw",
           "GRIDWIRE_DATABASE_POOL_SIZE": "3", "GRIDWIRE_INFLUX_URL": "http://influx.example:8086",
           "GRIDWIRE_INGEST_BATCH_READINGS": "5000", "GRIDWIRE_SCHEDULER_LEASE_SECONDS": "9",
           "GRIDWIRE_CAMPAIGN_POLL_SECONDS": "0.5", "GRIDWIRE_WEBHOOK_MAX_ATTEMPTS": "4",
           "GRIDWIRE_FIRMWARE_STORE_DIR": "/fw", "GRIDWIRE_MONITOR_SWEEP_SECONDS": "11",
           "GRIDWIRE_TIMESYNC_DRIFT_ALARM_SECONDS": "2", "GRIDWIRE_JWT_SECRET": "s" * 32}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = PlatformSettings()
    mqtt = settings.mqtt
    assert (mqtt.host, mqtt.port, mqtt.username, mqtt.secret(), mqtt.client_id, mqtt.inflight) == (
        "broker.example", 8884, "cloud-2", "pw", "ingest-1", 7)
    assert mqtt.tls() is not None and mqtt.tls().ca_file == "/tls/ca.pem" and mqtt.tls().cert_file is None
    assert (settings.database.url, settings.database.pool_size) == ("postgresql+asyncpg://gw@db/gw", 3)
    assert settings.influx.url == "http://influx.example:8086"
    assert settings.ingest.batch_readings == 5000 and settings.scheduler.lease_seconds == 9
    assert settings.campaign.poll_seconds == 0.5 and settings.webhook.max_attempts == 4
    assert settings.firmware.store_dir == Path("/fw") and settings.monitor.sweep_seconds == 11
    assert settings.timesync.drift_alarm_seconds == 2 and settings.jwt_secret.get_secret_value() == "s" * 32


def test_the_database_section_is_also_read_from_its_older_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRIDWIRE_REGISTRY_URL", "postgresql+asyncpg://gw@db/old")
    monkeypatch.setenv("GRIDWIRE_REGISTRY_POOL_SIZE", "4")
    settings = CloudSettings()
    assert (settings.database.url, settings.database.pool_size) == ("postgresql+asyncpg://gw@db/old", 4)


def test_given_sections_are_not_mixed_with_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRIDWIRE_MQTT_PORT", "9999")
    assert CloudSettings(mqtt=MqttSettings(host="h")).mqtt.port == 1883


def test_every_process_has_the_one_database_default() -> None:
    for name, process in PROCESSES.items():
        assert process.settings().database.url == DEFAULT_DATABASE_URL, name


def test_platform_settings_are_every_process_settings() -> None:
    """What lets one object run every process: no process can be handed less than it reads."""
    for name, process in PROCESSES.items():
        assert issubclass(PlatformSettings, process.settings), name


def test_plain_unless_a_ca_is_given_and_a_client_certificate_needs_both_files() -> None:
    assert MqttSettings().tls() is None
    tls = MqttSettings(ca_file=Path("ca.pem"), cert_file=Path("c.pem"), key_file=Path("c.key")).tls()
    assert tls is not None and (tls.ca_file, tls.cert_file, tls.key_file) == ("ca.pem", "c.pem", "c.key")
    with pytest.raises(ValidationError, match="cert_file and key_file go together"):
        MqttSettings(ca_file=Path("ca.pem"), cert_file=Path("c.pem"))
    with pytest.raises(ValidationError, match="needs mqtt ca_file"):
        MqttSettings(cert_file=Path("c.pem"), key_file=Path("c.key"))


def test_api_settings_keep_their_flat_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRIDWIRE_PKI_DIR", "/pki/ca")
    monkeypatch.setenv("GRIDWIRE_PROVISION_BROKER_PORT", "18883")
    monkeypatch.setenv("GRIDWIRE_BROKER_RESERVED_NAMES", "fleet")
    settings = ApiSettings()
    assert (settings.pki_dir, settings.provision_broker_port, settings.broker_reserved_names) == (
        Path("/pki/ca"), 18883, "fleet")


def test_a_webhook_backoff_ceiling_below_its_first_wait_is_a_settings_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRIDWIRE_WEBHOOK_BACKOFF_MAX_SECONDS", "0.5")
    with pytest.raises(ValidationError, match=r"webhook\.backoff_max_seconds\n.*greater than or equal to 1"):
        PlatformSettings()
    monkeypatch.setenv("GRIDWIRE_WEBHOOK_BACKOFF_MAX_SECONDS", "1")
    policy = PlatformSettings().webhook.policy()  # the smallest allowed ceiling makes a valid policy
    assert policy.backoff.maximum == policy.backoff.initial == 1.0
