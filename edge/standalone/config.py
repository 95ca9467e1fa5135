"""An external adapter's config file (TOML): its id, the concentrator's local listener, its
small outbox and its one meter. Errors name the file and the field; paths are relative to it.

Example::

    adapter_id = "cupboard"
    outbox = "outbox.sqlite"

    [listener]                  # the concentrator's local listener
    host = "concentrator.local"
    port = 8884
    ca_file = "local-ca.pem"    # TLS: required beyond loopback
    password_env = "GRIDWIRE_ADAPTER_PASSWORD"

    [meter]                     # as a [[meters]] entry of a concentrator config
    protocol = "p1"
    port = "/dev/ttyUSB0"
    adapter_config = "cupboard.yaml"
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import Field, ValidationError, model_validator

from broker.topics import validate_level
from edge.config import BrokerSettings, ConfigError, MeterEntry, P1Meter, PollingSettings, _Config

_LOOPBACK = ("127.0.0.1", "::1", "localhost")


class ListenerSettings(BrokerSettings):
    """Where the concentrator's local listener is; the username defaults to the adapter's id."""

    port: int = Field(default=1884, ge=1, le=65535)
    reconnect_max: float = Field(default=30.0, ge=1.0)

    @model_validator(mode="after")
    def _tls_beyond_loopback(self) -> ListenerSettings:
        if self.host not in _LOOPBACK and self.ca_file is None:
            raise ValueError(f"the listener at {self.host} is not on loopback: give ca_file (TLS)")
        return self


class StandaloneConfig(_Config):
    adapter_id: str = Field(min_length=1, max_length=64)
    listener: ListenerSettings = ListenerSettings()
    # Readings wait here while the concentrator is unreachable; deleted once it confirms them.
    outbox: Path = Path("var/adapter-outbox.sqlite")
    # A small device: about 1 KB a message on disk. At the limit the oldest live values go first.
    outbox_limit: int = Field(default=100_000, ge=1)
    # Seconds to wait for the concentrator's confirmation before sending a message again.
    confirm_timeout: float = Field(default=10.0, gt=0)
    max_unconfirmed: int = Field(default=500, ge=1)
    # DLMS HLS invocation counters (a DLMS meter only).
    invocation_counters: Path = Path("var/dlms-counters.sqlite")
    polling: PollingSettings = PollingSettings()
    meter: MeterEntry

    def model_post_init(self, _context: object) -> None:
        validate_level(self.adapter_id, what="adapter_id")

    @property
    def meters(self) -> list[object]:
        """The meter, as a list (what the shared meter set reads)."""
        return [self.meter]

    @property
    def username(self) -> str:
        return self.listener.username or self.adapter_id


def load_standalone_config(path: Path | str) -> StandaloneConfig:
    """Read and validate an external adapter's config; relative paths are relative to the file."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    try:
        config = StandaloneConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'] if p not in ('p1', 'dlms', 'modbus'))}: {e['msg']}"
                             for e in exc.errors())
        raise ConfigError(f"{path}: {problems}") from exc
    base = path.parent

    def resolve(p: Path) -> Path:
        return p if p.is_absolute() else base / p

    meter = config.meter
    if isinstance(meter, P1Meter):
        meter = meter.model_copy(update={"adapter_config": resolve(meter.adapter_config)})
    listener = config.listener
    listener = listener.model_copy(update={name: resolve(getattr(listener, name))
                                           for name in ("ca_file", "cert_file", "key_file")
                                           if getattr(listener, name) is not None})
    return config.model_copy(update={"outbox": resolve(config.outbox), "meter": meter, "listener": listener,
                                     "invocation_counters": resolve(config.invocation_counters)})
