"""The concentrator's own config file (TOML): its id, its broker, its outbox, its meters.

Errors name the file, the meter and the field. Secrets (broker password, DLMS keys) are
``SecretStr``: they never appear in a log line or a repr.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from broker.topics import validate_level


class ConfigError(ValueError):
    """A concentrator config that cannot be read or is invalid; the message names file and field."""


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BrokerSettings(_Config):
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    session_expiry: int = Field(default=7 * 24 * 3600, ge=0)
    max_inflight: int = Field(default=200, ge=1, le=65535)


class P1Meter(_Config):
    """A DSMR meter whose P1 port is wired to a serial port of the concentrator."""

    protocol: Literal["p1"]
    port: str = Field(description="serial device path, or a pyserial URL such as loop://")
    adapter_config: Path = Field(description="the OMDP SmartMeterAdapterConfig file for this meter")


MeterEntry = Annotated[P1Meter, Field(discriminator="protocol")]


class ConcentratorConfig(_Config):
    concentrator_id: str = Field(min_length=1, max_length=64)
    broker: BrokerSettings = BrokerSettings()
    outbox: Path = Path("var/outbox.sqlite")
    status_interval: float = Field(default=60.0, gt=0)
    # Seconds to wait for the cloud to confirm a stored message before sending it again.
    confirm_timeout: float = Field(default=30.0, gt=0)
    meters: list[MeterEntry] = Field(default_factory=list)

    def model_post_init(self, _context: object) -> None:
        validate_level(self.concentrator_id, what="concentrator_id")


def load_config(path: Path | str) -> ConcentratorConfig:
    """Read and validate a concentrator config; relative paths in it are relative to the file."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    try:
        config = ConcentratorConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(path, raw, exc)) from exc
    return _resolve_paths(config, path.parent)


def _describe(path: Path, raw: dict, exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        loc = list(error["loc"])
        where = ".".join(str(part) for part in loc)
        if len(loc) >= 2 and loc[0] == "meters" and isinstance(loc[1], int):
            meters = raw.get("meters", [])
            entry = meters[loc[1]] if loc[1] < len(meters) else {}
            name = entry.get("adapter_config") or entry.get("port") or f"#{loc[1] + 1}"
            where = f"meter {name}: " + ".".join(str(part) for part in loc[2:] if not str(part).startswith("function"))
        problems.append(f"{where}: {error['msg']}")
    return f"{path}: " + "; ".join(problems)


def _resolve_paths(config: ConcentratorConfig, base: Path) -> ConcentratorConfig:
    def resolve(p: Path) -> Path:
        return p if p.is_absolute() else base / p

    meters = [m.model_copy(update={"adapter_config": resolve(m.adapter_config)}) if isinstance(m, P1Meter) else m
              for m in config.meters]
    return config.model_copy(update={"outbox": resolve(config.outbox), "meters": meters})
