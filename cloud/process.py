"""What every cloud process shares: broker and database settings from ``GRIDWIRE_*``
variables, and the durable MQTT session built from them."""

from __future__ import annotations

import os
import socket

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from broker.session import MqttSession

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///var/gridwire.sqlite"


def default_client_id(role: str) -> str:
    """``<role>-<host>-<pid>``. Set the client id explicitly to make a restarted process resume
    its durable session (a container keeps its hostname; a pid changes)."""
    return f"{role}-{socket.gethostname()}-{os.getpid()}"


class CloudProcessSettings(BaseSettings):
    """Broker login and the relational database; e.g. ``GRIDWIRE_MQTT_HOST``, ``GRIDWIRE_REGISTRY_URL``."""

    model_config = SettingsConfigDict(env_prefix="GRIDWIRE_", extra="ignore")

    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    mqtt_username: str = "gridwire-cloud"
    mqtt_password: SecretStr | None = None
    registry_url: str = DEFAULT_DATABASE_URL

    def mqtt_session(self, client_id: str, **options: object) -> MqttSession:
        return MqttSession(client_id=client_id, host=self.mqtt_host, port=self.mqtt_port,
                           username=self.mqtt_username,
                           password=self.mqtt_password.get_secret_value() if self.mqtt_password else None,
                           **options)  # type: ignore[arg-type]
