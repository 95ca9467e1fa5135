"""Configuration of one DLMS meter for the adapter (pydantic; secrets are SecretStr).

Keys and passwords never appear in ``repr``, logs or error messages: SecretStr masks them,
and errors from this module name the field, not the value.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator


class SecurityMode(StrEnum):
    """The association security levels the simulator and the adapter support."""

    NONE = "none"
    LLS = "lls"
    HLS_GMAC = "hls-gmac"

    @property
    def authentication(self) -> int:
        # gurux Authentication enum values: NONE 0, LOW 1, HIGH_GMAC 5.
        return {SecurityMode.NONE: 0, SecurityMode.LLS: 1, SecurityMode.HLS_GMAC: 5}[self]


class DlmsMeterConfig(BaseModel):
    """How to reach and authenticate to one DLMS meter, and what to read from it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    meter_id: str = Field(min_length=1, max_length=128, pattern=r"^[^/+#\x00]+$",
                          description="OMDP MeterIndividual id added to every reading")
    host: str = Field(min_length=1)
    port: int = Field(default=4059, ge=1, le=65535)
    transport: Literal["tcp"] = "tcp"
    security: SecurityMode = SecurityMode.LLS
    password: SecretStr | None = None
    # 16-byte AES keys and 8-byte system titles, as hex.
    block_cipher_key: SecretStr | None = None
    authentication_key: SecretStr | None = None
    client_system_title: str = Field(default="4757454447450001", pattern=r"^[0-9A-Fa-f]{16}$")
    client_address: int = Field(default=1, ge=1, le=0x7F)
    server_address: int = Field(default=1, ge=1, le=0x3FFF)
    profile: str = Field(default="dsmr-4.2.2", min_length=1)
    timeout_s: float = Field(default=5.0, gt=0, le=120)
    interval_s: float = Field(default=900.0, gt=0)
    # The shared medium the poller bounds concurrency on; defaults to host:port.
    bus: str | None = None

    @model_validator(mode="after")
    def _secrets_for_mode(self) -> DlmsMeterConfig:
        if self.security is SecurityMode.LLS and not self.password:
            raise ValueError("security 'lls' needs a password")
        if self.security is SecurityMode.HLS_GMAC:
            for name in ("block_cipher_key", "authentication_key"):
                secret = getattr(self, name)
                if secret is None:
                    raise ValueError(f"security 'hls-gmac' needs {name}")
                try:
                    key = bytes.fromhex(secret.get_secret_value())
                except ValueError:
                    raise ValueError(f"{name} must be hex") from None
                if len(key) != 16:
                    raise ValueError(f"{name} must be 16 bytes (32 hex digits) for security suite 0")
        return self

    def key_bytes(self, name: Literal["block_cipher_key", "authentication_key"]) -> bytes:
        secret = getattr(self, name)
        if secret is None:
            raise ValueError(f"{name} is not configured")
        return bytes.fromhex(secret.get_secret_value())
