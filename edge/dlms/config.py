"""Configuration of one DLMS meter for the adapter (pydantic; secrets are SecretStr).

Keys and passwords never appear in ``repr``, logs or error messages: SecretStr masks them,
and errors from this module name the field, not the value.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

# Defined once, without pydantic, beside the concentrator's lean config.
from edge.config_lean import SecurityMode, dlms_link_rules


class DlmsMeterConfig(BaseModel):
    """How to reach and authenticate to one DLMS meter, and what to read from it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    meter_id: str = Field(min_length=1, max_length=128, pattern=r"^[^/+#\x00]+$",
                          description="OMDP MeterIndividual id added to every reading")
    # Exactly one of ``host`` (TCP, WRAPPER) or ``serial`` (a serial port, HDLC) is set.
    host: str | None = Field(default=None, min_length=1)
    port: int = Field(default=4059, ge=1, le=65535)
    serial: str | None = Field(default=None, min_length=1, description="serial device path (HDLC)")
    baudrate: int = Field(default=9600, description="serial speed; IEC 62056-21 mode E meters use 9600")
    # Optional: inferred from host/serial; when given it must agree with them.
    transport: Literal["tcp", "serial"] | None = None
    security: SecurityMode = SecurityMode.LLS
    password: SecretStr | None = None
    # 16-byte AES keys and 8-byte system titles, as hex.
    block_cipher_key: SecretStr | None = None
    authentication_key: SecretStr | None = None
    # The key encryption key (master key, KEK) that wraps new keys in a key change (global_key_transfer).
    master_key: SecretStr | None = None
    client_system_title: str = Field(default="4757454447450001", pattern=r"^[0-9A-Fa-f]{16}$")
    # On TCP these are the WRAPPER ports; on serial the HDLC client address and the upper HDLC
    # (logical device) address, with ``physical_address`` as the optional lower address.
    client_address: int = Field(default=1, ge=1, le=0x7F)
    server_address: int = Field(default=1, ge=1, le=0x3FFF)
    physical_address: int | None = Field(default=None, ge=0x10, le=0x3FFD)
    profile: str = Field(default="dsmr-4.2.2", min_length=1)
    # The device model as the registry knows it (firmware manifests name the models they fit);
    # default: the profile name.
    model: str | None = Field(default=None, min_length=1, max_length=128)
    timeout_s: float = Field(default=5.0, gt=0, le=120)
    interval_s: float = Field(default=900.0, gt=0)
    # The shared medium the poller bounds concurrency on; defaults to the endpoint.
    bus: str | None = None
    # The COSEM logical device name (0.0.42.0.0.255) the meter's pushes carry; default: meter_id.
    device_name: str | None = Field(default=None, min_length=1, max_length=64)

    @model_validator(mode="after")
    def _one_link(self) -> DlmsMeterConfig:
        dlms_link_rules(self)
        return self

    @property
    def link(self) -> Literal["tcp", "serial"]:
        """Which link the meter is on: 'tcp' (WRAPPER) or 'serial' (HDLC)."""
        return "serial" if self.serial is not None else "tcp"

    @property
    def endpoint(self) -> str:
        """The link as text for logs and bus names: ``tcp:host:port`` or ``serial:/dev/...``."""
        return f"serial:{self.serial}" if self.serial is not None else f"tcp:{self.host}:{self.port}"

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
        if self.master_key is not None:
            try:
                master = bytes.fromhex(self.master_key.get_secret_value())
            except ValueError:
                raise ValueError("master_key must be hex") from None
            if len(master) != 16:
                raise ValueError("master_key must be 16 bytes (32 hex digits) for security suite 0")
        return self

    def key_bytes(self, name: Literal["block_cipher_key", "authentication_key", "master_key"]) -> bytes:
        secret = getattr(self, name)
        if secret is None:
            raise ValueError(f"{name} is not configured")
        return bytes.fromhex(secret.get_secret_value())
