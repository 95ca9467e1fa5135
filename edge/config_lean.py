"""The concentrator's config without pydantic (issue 15: the concentrator's memory).

The pydantic models of :mod:`edge.config`, :mod:`edge.dlms.config` and :mod:`edge.modbus.config`
stay the one definition (docs, ``gridwire concentrator check``'s messages). These classes restate
them on :mod:`broker.lean.base`, field for field, so that a config can be read without importing
pydantic; tests/edge/test_config_lean.py holds them to the same inputs accepted and the same values.
Their error texts are not the pydantic ones: a caller that refuses a config validates it again with
the pydantic models for the message.
"""

from __future__ import annotations

import os
import re
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from broker.lean.base import Lean  # noqa: F401 (the base of these classes, for their users)
from broker.lean.base import (Field, Secret, boolean, choice, constant, integer, list_of, member, model, number,
                              optional, path, secret, tagged, text)
from broker.errors import Invalid
from broker.topics import validate_level

SERIAL_BAUDRATES = frozenset({300, 600, 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200})
_METER_ID = r"^[^/+#\x00]+$"
_LOOPBACK = ("127.0.0.1", "::1", "localhost")


class ConfigError(Invalid):
    """A concentrator config that cannot be read or is invalid; the message names file and field."""


class SecurityMode(StrEnum):
    """The association security levels the simulator and the adapter support."""

    NONE = "none"
    LLS = "lls"
    HLS_GMAC = "hls-gmac"

    @property
    def authentication(self) -> int:
        # gurux Authentication enum values: NONE 0, LOW 1, HIGH_GMAC 5.
        return {SecurityMode.NONE: 0, SecurityMode.LLS: 1, SecurityMode.HLS_GMAC: 5}[self]


# Rules across fields, one definition for these classes and the pydantic models that define the
# config (edge.config_model, edge.dlms.config, edge.modbus.config), whose validators call them.

def dlms_link_rules(meter: Any) -> None:
    """A DLMS meter has one link, TCP or HDLC serial, and only that link's settings."""
    if (meter.host is None) == (meter.serial is None):
        raise ValueError("set exactly one of 'host' (TCP) or 'serial' (HDLC serial port)")
    if meter.transport is not None and meter.transport != meter.link:
        raise ValueError(f"transport '{meter.transport}' does not match the configured {meter.link} link")
    if meter.serial is not None and meter.baudrate not in SERIAL_BAUDRATES:
        raise ValueError(f"baudrate must be one of {sorted(SERIAL_BAUDRATES)}")
    if meter.host is not None and meter.physical_address is not None:
        raise ValueError("physical_address is an HDLC address: it needs 'serial'")


def modbus_target_rules(meter: Any) -> None:
    if (meter.tcp is None) == (meter.serial is None):
        raise ValueError(f"meter {meter.meter_id!r}: give exactly one of tcp and serial")


def modbus_connection_key(meter: Any) -> str:
    """Identifies a Modbus meter's physical connection; meters with the same key share a client."""
    if meter.tcp is not None:
        return f"tcp:{meter.tcp.host}:{meter.tcp.port}"
    assert meter.serial is not None
    return f"serial:{meter.serial.port}"


def local_listener_rules(listener: Any) -> None:
    """The local listener is secure by default: TLS off loopback, complete TLS settings, unique adapters."""
    if listener.host not in _LOOPBACK and listener.ca_file is None:
        raise ValueError(f"the local listener at {listener.host} is not on loopback: give ca_file (TLS)")
    if listener.tls_port is not None and None in (listener.tls_ca_file, listener.tls_cert_file, listener.tls_key_file):
        raise ValueError("tls_port needs tls_ca_file, tls_cert_file and tls_key_file (the broker's certificate)")
    if listener.tls_bind is not None and listener.tls_port is None:
        raise ValueError("tls_bind needs tls_port: adapters on the network connect over TLS only")
    ids = [a.adapter_id for a in listener.adapters]
    if len(ids) != len(set(ids)):
        raise ValueError("local.adapters: an adapter_id appears twice")


class _Config(Lean):
    forbid_extra = True
    frozen = True


def _secret_of(password: Secret | None, env: str | None, *, what: str) -> str | None:
    if password is not None:
        return password.get_secret_value()
    if env is not None:
        value = os.environ.get(env)
        if value is None:
            raise ConfigError(f"{what}.password_env: variable {env} is not set")
        return value
    return None


_OPT_TEXT = optional(text())
_OPT_PATH = optional(path)
_OPT_SECRET = optional(secret)
_PORT = integer(ge=1, le=65535)


class BrokerSettings(_Config):
    fields = (
        Field("host", text(), default="127.0.0.1"),
        Field("port", _PORT, default=1883),
        Field("reconnect_max", number(ge=1.0), default=60.0),
        Field("username", _OPT_TEXT, default=None),
        Field("password", _OPT_SECRET, default=None),
        Field("password_env", _OPT_TEXT, default=None),
        Field("ca_file", _OPT_PATH, default=None),
        Field("cert_file", _OPT_PATH, default=None),
        Field("key_file", _OPT_PATH, default=None),
        Field("session_expiry", integer(ge=0), default=7 * 24 * 3600),
        Field("max_inflight", integer(ge=1, le=65535), default=200),
    )

    def secret(self) -> str | None:
        """The broker password: given inline, or from the variable ``password_env`` names."""
        return _secret_of(self.password, self.password_env, what="broker")


_HEX_KEY = re.compile(r"[0-9A-Fa-f]{32}")


class P1Meter(_Config):
    """A DSMR meter on a serial port of the concentrator (edge.config.P1Meter)."""

    fields = (
        Field("protocol", constant("p1")),
        Field("port", text()),
        Field("adapter_config", path),
        Field("smarty_key", _OPT_SECRET, default=None),
        Field("smarty_authentication_key", _OPT_SECRET, default=None),
        Field("forward", constant("aggregate", "every"), default="aggregate"),
        Field("aggregate_s", number(gt=0), default=900.0),
        Field("batch_s", number(ge=0), default=10.0),
        Field("live_s", number(ge=0), default=5.0),
    )

    def _after(self) -> None:
        for name in ("smarty_key", "smarty_authentication_key"):
            value = getattr(self, name)
            if value is not None and not _HEX_KEY.fullmatch(value.get_secret_value()):
                raise ValueError(f"{name} must be 32 hex digits (an AES-128 key)")

    def smarty_keys(self) -> dict[str, bytes | None]:
        """The P1Reader arguments for the keys (none for a meter that does not encrypt)."""
        def raw(value: Secret | None) -> bytes | None:
            return bytes.fromhex(value.get_secret_value()) if value is not None else None
        return {"smarty_key": raw(self.smarty_key), "smarty_authentication_key": raw(self.smarty_authentication_key)}


_DLMS_FIELDS = (
    Field("meter_id", text(min_length=1, max_length=128, pattern=_METER_ID)),
    Field("host", optional(text(min_length=1)), default=None),
    Field("port", _PORT, default=4059),
    Field("serial", optional(text(min_length=1)), default=None),
    Field("baudrate", integer(), default=9600),
    Field("transport", optional(constant("tcp", "serial")), default=None),
    Field("security", member(SecurityMode), default=SecurityMode.LLS),
    Field("password", _OPT_SECRET, default=None),
    Field("block_cipher_key", _OPT_SECRET, default=None),
    Field("authentication_key", _OPT_SECRET, default=None),
    Field("master_key", _OPT_SECRET, default=None),
    Field("client_system_title", text(pattern=r"^[0-9A-Fa-f]{16}$"), default="4757454447450001"),
    Field("client_address", integer(ge=1, le=0x7F), default=1),
    Field("server_address", integer(ge=1, le=0x3FFF), default=1),
    Field("physical_address", optional(integer(ge=0x10, le=0x3FFD)), default=None),
    Field("profile", text(min_length=1), default="dsmr-4.2.2"),
    Field("model", optional(text(min_length=1, max_length=128)), default=None),
    Field("timeout_s", number(gt=0, le=120), default=5.0),
    Field("interval_s", number(gt=0), default=900.0),
    Field("bus", _OPT_TEXT, default=None),
    Field("device_name", optional(text(min_length=1, max_length=64)), default=None),
)


class DlmsMeterConfig(_Config):
    """How to reach and authenticate to one DLMS meter (edge.dlms.config.DlmsMeterConfig)."""

    fields = _DLMS_FIELDS

    def _after(self) -> None:
        dlms_link_rules(self)
        if self.security is SecurityMode.LLS and not self.password:
            raise ValueError("security 'lls' needs a password")
        if self.security is SecurityMode.HLS_GMAC:
            for name in ("block_cipher_key", "authentication_key"):
                value = getattr(self, name)
                if value is None:
                    raise ValueError(f"security 'hls-gmac' needs {name}")
                _key16(value, name)
        if self.master_key is not None:
            _key16(self.master_key, "master_key")

    @property
    def link(self) -> Literal["tcp", "serial"]:
        """Which link the meter is on: 'tcp' (WRAPPER) or 'serial' (HDLC)."""
        return "serial" if self.serial is not None else "tcp"

    @property
    def endpoint(self) -> str:
        """The link as text for logs and bus names: ``tcp:host:port`` or ``serial:/dev/...``."""
        return f"serial:{self.serial}" if self.serial is not None else f"tcp:{self.host}:{self.port}"

    def key_bytes(self, name: Literal["block_cipher_key", "authentication_key", "master_key"]) -> bytes:
        value = getattr(self, name)
        if value is None:
            raise ValueError(f"{name} is not configured")
        return bytes.fromhex(value.get_secret_value())


def _key16(value: Secret, name: str) -> None:
    try:
        key = bytes.fromhex(value.get_secret_value())
    except ValueError:
        raise ValueError(f"{name} must be hex") from None
    if len(key) != 16:
        raise ValueError(f"{name} must be 16 bytes (32 hex digits) for security suite 0")


class DlmsMeter(DlmsMeterConfig):
    """A DLMS/COSEM meter entry of the concentrator's config (edge.config.DlmsMeter)."""

    fields = (*_DLMS_FIELDS, Field("protocol", constant("dlms")))


class ModbusTcpTarget(_Config):
    fields = (Field("host", text(min_length=1)), Field("port", _PORT, default=502))


class ModbusSerialTarget(_Config):
    fields = (
        Field("port", text(min_length=1)),
        Field("baudrate", integer(gt=0), default=9600),
        Field("parity", constant("N", "E", "O"), default="N"),
        Field("stopbits", choice(1, 2), default=1),
        Field("bytesize", choice(7, 8), default=8),
    )


_MODBUS_FIELDS = (
    Field("meter_id", text(min_length=1, max_length=128, pattern=_METER_ID), alias="meterIndividualId"),
    Field("register_map", text(min_length=1), alias="registerMap"),
    Field("unit_id", integer(ge=0, le=247), alias="unitId", default=1),
    Field("tcp", optional(model(ModbusTcpTarget)), default=None),
    Field("serial", optional(model(ModbusSerialTarget)), default=None),
    Field("interval", number(gt=0), default=900.0),
    Field("bus", _OPT_TEXT, default=None),
    Field("timeout", number(gt=0), default=2.0),
)


class ModbusMeterConfig(_Config):
    """One Modbus meter the concentrator polls (edge.modbus.config.ModbusMeterConfig)."""

    fields = _MODBUS_FIELDS

    def _after(self) -> None:
        modbus_target_rules(self)

    @property
    def connection_key(self) -> str:
        """Identifies the physical connection; meters with the same key share a client."""
        return modbus_connection_key(self)

    @property
    def bus_key(self) -> str:
        return self.bus or self.connection_key


class ModbusMeter(ModbusMeterConfig):
    fields = (*_MODBUS_FIELDS, Field("protocol", constant("modbus")))


class PollingSettings(_Config):
    fields = (
        Field("retry_base_s", number(gt=0), default=1.0),
        Field("retry_cap_s", number(gt=0), default=60.0),
        Field("unhealthy_after", integer(ge=1), default=3),
        Field("jitter", number(ge=0, le=1), default=0.1),
        Field("bus_limit", integer(ge=1), default=1),
    )


class BackfillSettings(_Config):
    fields = (
        Field("enabled", boolean, default=True),
        Field("initial_hours", number(ge=0), default=24.0),
        Field("max_days", number(gt=0), default=10.0),
        Field("lookahead_hours", number(ge=0), default=24.0),
    )


class FirmwareSettings(_Config):
    fields = (
        Field("trusted_keys", list_of(path), factory=list),
        Field("cache_dir", _OPT_PATH, default=None),
        Field("chunk_size", integer(ge=1024, le=65536), default=32 * 1024),
        Field("window", integer(ge=1, le=64), default=4),
        Field("batch", integer(ge=1, le=64), default=32),
        Field("request_timeout", number(gt=0), default=10.0),
        Field("max_attempts", integer(ge=1), default=8),
    )


class SoftwareSettings(_Config):
    fields = (
        Field("model", text(min_length=1), default="gridwire-concentrator"),
        Field("health_deadline", number(gt=0), default=120.0),
    )


class MetricsSettings(_Config):
    fields = (
        Field("host", text(), default="127.0.0.1"),
        Field("port", optional(integer(ge=0, le=65535)), default=None),
    )


class PushSettings(_Config):
    fields = (
        Field("host", text(), default="127.0.0.1"),
        Field("port", optional(integer(ge=0, le=65535)), default=None),
        Field("serial", list_of(text()), factory=list),
        Field("baudrate", integer(gt=0), default=9600),
    )

    @property
    def enabled(self) -> bool:
        return self.port is not None or bool(self.serial)


class LiveBatchSettings(_Config):
    fields = (
        Field("enabled", boolean, default=False),
        Field("window_s", number(gt=0, le=10.0), default=0.25),
        Field("max_readings", integer(ge=1, le=10_000), default=500),
    )


class LocalAdapter(_Config):
    fields = (
        Field("adapter_id", text(min_length=1, max_length=64)),
        Field("adapter_config", path),
        Field("password", _OPT_SECRET, default=None),
        Field("password_env", _OPT_TEXT, default=None),
    )

    def _after(self) -> None:
        validate_level(self.adapter_id, what="adapter_id")

    def secret(self) -> str | None:
        return _secret_of(self.password, self.password_env, what=f"local.adapters {self.adapter_id}")


class LocalListener(BrokerSettings):
    fields = tuple(
        {"port": Field("port", _PORT, default=1884),
         "username": Field("username", _OPT_TEXT, default="concentrator")}.get(f.name, f)
        for f in BrokerSettings.fields
    ) + (
        Field("adapters", list_of(model(LocalAdapter)), factory=list),
        Field("tls_bind", _OPT_TEXT, default=None),
        Field("tls_port", optional(integer(ge=1, le=65535)), default=None),
        Field("tls_ca_file", _OPT_PATH, default=None),
        Field("tls_cert_file", _OPT_PATH, default=None),
        Field("tls_key_file", _OPT_PATH, default=None),
    )

    def _after(self) -> None:
        local_listener_rules(self)


METER_ENTRY = tagged("protocol", {"p1": P1Meter, "dlms": DlmsMeter, "modbus": ModbusMeter})


class ConcentratorConfig(_Config):
    """The concentrator's config file (edge.config.ConcentratorConfig)."""

    fields = (
        Field("concentrator_id", text(min_length=1, max_length=64)),
        Field("broker", model(BrokerSettings), default=BrokerSettings()),
        Field("outbox", path, default=Path("var/outbox.sqlite")),
        Field("outbox_limit", integer(ge=1), default=2_000_000),
        Field("status_interval", number(gt=0), default=60.0),
        Field("confirm_timeout", number(gt=0), default=30.0),
        Field("max_unconfirmed", integer(ge=1), default=1000),
        Field("clock_check_interval", number(gt=0), default=3600.0),
        Field("clock_drift_threshold", number(gt=0), default=10.0),
        Field("state", path, default=Path("var/state.sqlite")),
        Field("invocation_counters", path, default=Path("var/dlms-counters.sqlite")),
        Field("secrets_key_file", _OPT_PATH, default=None),
        Field("dlms_keys", path, default=Path("var/dlms-keys.sqlite")),
        Field("completeness_days", integer(ge=0, le=31), default=3),
        Field("polling", model(PollingSettings), default=PollingSettings()),
        Field("backfill", model(BackfillSettings), default=BackfillSettings()),
        Field("firmware", model(FirmwareSettings), default=FirmwareSettings()),
        Field("software", model(SoftwareSettings), default=SoftwareSettings()),
        Field("metrics", model(MetricsSettings), default=MetricsSettings()),
        Field("push", model(PushSettings), default=PushSettings()),
        Field("live_batch", model(LiveBatchSettings), default=LiveBatchSettings()),
        Field("local", optional(model(LocalListener)), default=None),
        Field("meters", list_of(METER_ENTRY), factory=list),
    )

    def _after(self) -> None:
        validate_level(self.concentrator_id, what="concentrator_id")
        seen: set[str] = set()
        for meter in self.meters:
            meter_id = getattr(meter, "meter_id", None)
            if meter_id is None:
                continue
            if meter_id in seen:
                raise ValueError(f"meter {meter_id}: meter_id appears twice")
            seen.add(meter_id)
