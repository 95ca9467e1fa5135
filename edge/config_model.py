"""The concentrator's config file, defined (pydantic): its id, its broker, its outbox, its meters.

These models are the one definition of the config: the docs, ``gridwire concentrator check`` and
every ConfigError's wording come from them. The concentrator itself reads its config with the lean
restatement in :mod:`edge.config_lean` (no pydantic on its run path; tests/edge/test_config_lean.py
holds both to the same inputs and values) and comes here only for the message when a config is
refused (:func:`edge.config.load_config`). Secrets are ``SecretStr``: never in a log line or a repr.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from broker.topics import validate_level
from edge.config_lean import ConfigError, local_listener_rules
from edge.dlms.config import DlmsMeterConfig
from edge.modbus.config import ModbusMeterConfig


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BrokerSettings(_Config):
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    # Connecting runs in the background (the meters are read meanwhile); a failed attempt is
    # retried after up to this many seconds, randomised so that a fleet does not retry in step.
    reconnect_max: float = Field(default=60.0, ge=1.0)
    username: str | None = None
    password: SecretStr | None = None
    # Read the password from this environment variable instead (keeps it out of the file).
    password_env: str | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    session_expiry: int = Field(default=7 * 24 * 3600, ge=0)
    max_inflight: int = Field(default=200, ge=1, le=65535)


    def secret(self) -> str | None:
        """The broker password: given inline, or from the variable ``password_env`` names."""
        return _secret(self.password, self.password_env, what="broker")


def _secret(password: SecretStr | None, env: str | None, *, what: str) -> str | None:
    if password is not None:
        return password.get_secret_value()
    if env is not None:
        value = os.environ.get(env)
        if value is None:
            raise ConfigError(f"{what}.password_env: variable {env} is not set")
        return value
    return None


class P1Meter(_Config):
    """A DSMR meter whose P1 port is wired to a serial port of the concentrator."""

    protocol: Literal["p1"]
    port: str = Field(description="serial device path, or a pyserial URL such as loop://")
    adapter_config: Path = Field(description="the OMDP SmartMeterAdapterConfig file for this meter")
    # A Luxembourg Smarty meter encrypts its telegrams: its AES-128 key (hex) from the grid
    # operator, and the authentication key that checks each frame (without it, the CRC does).
    smarty_key: SecretStr | None = None
    smarty_authentication_key: SecretStr | None = None

    @model_validator(mode="after")
    def _aes_keys(self) -> P1Meter:
        for name in ("smarty_key", "smarty_authentication_key"):
            secret = getattr(self, name)
            if secret is not None and not re.fullmatch(r"[0-9A-Fa-f]{32}", secret.get_secret_value()):
                raise ValueError(f"{name} must be 32 hex digits (an AES-128 key)")
        return self

    def smarty_keys(self) -> dict[str, bytes | None]:
        """The P1Reader arguments for the keys (none for a meter that does not encrypt)."""
        def raw(secret: SecretStr | None) -> bytes | None:
            return bytes.fromhex(secret.get_secret_value()) if secret is not None else None
        return {"smarty_key": raw(self.smarty_key), "smarty_authentication_key": raw(self.smarty_authentication_key)}
    # What reaches the outbox (edge/p1/forwarding.py): a summary per interval (mean, min, max,
    # last) or every telegram, written in batches; either way one fsync per interval or batch,
    # not one per second.
    forward: Literal["aggregate", "every"] = "aggregate"
    aggregate_s: float = Field(default=900.0, gt=0, description="the aggregation interval, aligned to the clock")
    batch_s: float = Field(default=10.0, ge=0, description="with forward = every: seconds of telegrams per outbox write")
    # The latest reading, retained at QoS 0 on concentrator/{cid}/live/{meter}, at most this often; 0 turns it off.
    live_s: float = Field(default=5.0, ge=0)


class DlmsMeter(DlmsMeterConfig):
    """A DLMS/COSEM meter over TCP (WRAPPER, ``host``) or a serial port (HDLC, ``serial``); its
    profile maps OBIS codes to OMDP properties.

    ``interval_s`` is the poll schedule; the profile's load-profile period sets the
    15-minute (or other) intervals that backfill and completeness count.
    """

    protocol: Literal["dlms"]


class ModbusMeter(ModbusMeterConfig):
    """A Modbus TCP/RTU device; its register map maps points to OMDP properties."""

    protocol: Literal["modbus"]


class PollingSettings(_Config):
    """How the poller retries a meter that does not answer and when it calls it unhealthy."""

    retry_base_s: float = Field(default=1.0, gt=0)
    retry_cap_s: float = Field(default=60.0, gt=0)
    unhealthy_after: int = Field(default=3, ge=1)
    jitter: float = Field(default=0.1, ge=0, le=1)
    # Requests in flight at once on one bus (a serial line, a TCP gateway, one meter's socket).
    bus_limit: int = Field(default=1, ge=1)


class BackfillSettings(_Config):
    """Gap backfill from the meters' own load profiles."""

    enabled: bool = True
    # With no reading on record (first start), how far back to read the load profile.
    initial_hours: float = Field(default=24.0, ge=0)
    # Never read further back than this, whatever the gap (meters keep about 10 days).
    max_days: float = Field(default=10.0, gt=0)
    # Meter clocks may run ahead of ours: read this far past our "now" as well.
    lookahead_hours: float = Field(default=24.0, ge=0)


class FirmwareSettings(_Config):
    """Firmware updates of the meters (``update_firmware``): whose signatures to trust, where images go."""

    # Ed25519 public keys (PEM files, or directories of *.pem) that may sign firmware manifests.
    trusted_keys: list[Path] = Field(default_factory=list)
    # Downloaded images by sha256; default: a "firmware" directory next to the state database.
    cache_dir: Path | None = None
    chunk_size: int = Field(default=32 * 1024, ge=1024, le=65536)
    # Chunk requests in flight at once, chunks one request asks for (each answered as its own
    # message), and how long one request may wait for its answers. 4 x 32 chunks keep as many
    # in flight as 16 x 8 did with a quarter of the requests (bench/README.md, fleet_ota).
    window: int = Field(default=4, ge=1, le=64)
    batch: int = Field(default=32, ge=1, le=64)
    request_timeout: float = Field(default=10.0, gt=0)
    max_attempts: int = Field(default=8, ge=1)


class SoftwareSettings(_Config):
    """Updates of the concentrator's own software (edge/selfupdate, docs/FIRMWARE.md)."""

    # The model this concentrator is in the registry: a manifest must name it.
    model: str = Field(default="gridwire-concentrator", min_length=1)
    # A new version must be connected, forwarding and have read every meter within this, or it
    # is rolled back.
    health_deadline: float = Field(default=120.0, gt=0)


class MetricsSettings(_Config):
    """Prometheus metrics at ``http://host:port/metrics`` (off unless ``port`` is set). Loopback by
    default: the appliance's metrics are for a local agent or an SSH tunnel, not the open network."""

    host: str = "127.0.0.1"
    port: int | None = Field(default=None, ge=0, le=65535)


class PushSettings(_Config):
    """The DLMS push listener (meters' data and event notifications); off unless ``port`` or
    ``serial`` is set. Pushes are not TLS: it binds to loopback unless ``host`` says otherwise,
    and takes TCP connections only from configured meters' addresses."""

    host: str = "127.0.0.1"
    port: int | None = Field(default=None, ge=0, le=65535)
    # Serial lines (device paths) meters push HDLC frames on.
    serial: list[str] = Field(default_factory=list)
    baudrate: int = Field(default=9600, gt=0)

    @property
    def enabled(self) -> bool:
        return self.port is not None or bool(self.serial)


class LiveBatchSettings(_Config):
    """Live readings to the cloud in batches (off by default): what the outbox holds of live
    ``meterReading`` messages goes out on ``concentrator/{cid}/batch/meterReading``, one message
    per ``window_s`` seconds or per ``max_readings`` readings, instead of one per reading on the
    meter's OMDP topic. Each reading keeps its outbox row and sequence number and leaves the
    outbox only when the cloud confirms it stored it, as before. The cloud's services read the
    batch topic; an OMDP subscriber of ``concentrator/{cid}/smartMeterMessage/+/meterReading``
    itself gets nothing while it is on (docs/ARCHITECTURE.md, "Live batches"). Historical
    readings and events keep their own topics."""

    enabled: bool = False
    # How long the first reading of a batch waits for others (seconds).
    window_s: float = Field(default=0.25, gt=0, le=10.0)
    # A batch goes out at once with this many readings.
    max_readings: int = Field(default=500, ge=1, le=10_000)


MeterEntry = Annotated[P1Meter | DlmsMeter | ModbusMeter, Field(discriminator="protocol")]


class LocalAdapter(_Config):
    """An external SmartMeterAdapter (another device) allowed on the local listener: its broker
    account publishes only for the meterIndividualIds of its OMDP adapter config."""

    adapter_id: str = Field(min_length=1, max_length=64)
    adapter_config: Path = Field(description="the adapter's OMDP SmartMeterAdapterConfig: its meters")
    # Its broker password, for the generated broker's account (gridwire concentrator local-broker).
    password: SecretStr | None = None
    password_env: str | None = None

    def model_post_init(self, _context: object) -> None:
        validate_level(self.adapter_id, what="adapter_id")

    def secret(self) -> str | None:
        return _secret(self.password, self.password_env, what=f"local.adapters {self.adapter_id}")


class LocalListener(BrokerSettings):
    """The concentrator's local MQTT listener for SmartMeterAdapters on other devices: the broker
    it subscribes to ``smartMeterMessage/+/+`` on (``host``/``port``, its own account), and the
    adapters allowed there. ``gridwire concentrator local-broker`` writes a Mosquitto config for
    it: a plain listener on loopback for the concentrator, and for adapters on the network a TLS
    listener only (``tls_bind``, ``tls_port`` with a server certificate), never plain text."""

    port: int = Field(default=1884, ge=1, le=65535)
    username: str | None = "concentrator"
    adapters: list[LocalAdapter] = Field(default_factory=list)
    # The generated broker's network listener (TLS, password login); None: loopback only.
    tls_bind: str | None = None
    tls_port: int | None = Field(default=None, ge=1, le=65535)
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None

    @model_validator(mode="after")
    def _secure_by_default(self) -> LocalListener:
        local_listener_rules(self)
        return self


class ConcentratorConfig(_Config):
    concentrator_id: str = Field(min_length=1, max_length=64)
    broker: BrokerSettings = BrokerSettings()
    outbox: Path = Path("var/outbox.sqlite")
    # Messages the outbox holds at most (about 1 KB each on disk): 2,000,000 is 17 days of one P1
    # meter at a telegram a second and 20 meters polled each minute. At the limit the oldest live
    # values give way first (edge/outbox.py); the status says OK, HIGH (80%) or FULL.
    outbox_limit: int = Field(default=2_000_000, ge=1)
    status_interval: float = Field(default=60.0, gt=0)
    # Seconds to wait for the cloud to confirm a stored message before sending it again.
    confirm_timeout: float = Field(default=30.0, gt=0)
    # Messages the broker holds for us that the cloud has not confirmed yet; the rest waits in
    # the outbox. Keeps the broker's queue for a fleet bounded: Mosquitto spends more CPU per
    # message as its queues deepen (bench/ingest.py: 4x per reading with 6,000 messages queued).
    max_unconfirmed: int = Field(default=1000, ge=1)
    # DLMS meter clocks: checked against the cloud's time this often, set past this drift.
    clock_check_interval: float = Field(default=3600.0, gt=0)
    clock_drift_threshold: float = Field(default=10.0, gt=0)
    # Backfill cursors and completeness counts (SQLite), next to the outbox by default.
    state: Path = Path("var/state.sqlite")
    # DLMS HLS invocation counters (SQLite): must survive restarts, or meters refuse us.
    invocation_counters: Path = Path("var/dlms-counters.sqlite")
    # The sealing key ring (``<id>:<base64url key>``, a line each; the first seals) that opens the
    # sealed secrets of this file and of the DLMS key store; default: GRIDWIRE_SECRETS_KEY.
    secrets_key_file: Path | None = None
    # DLMS keys changed through the platform (two-phase, sealed): they override the file's.
    dlms_keys: Path = Path("var/dlms-keys.sqlite")
    # Days of completeness the status reports per meter.
    completeness_days: int = Field(default=3, ge=0, le=31)
    polling: PollingSettings = PollingSettings()
    backfill: BackfillSettings = BackfillSettings()
    firmware: FirmwareSettings = FirmwareSettings()
    software: SoftwareSettings = SoftwareSettings()
    metrics: MetricsSettings = MetricsSettings()
    push: PushSettings = PushSettings()
    live_batch: LiveBatchSettings = LiveBatchSettings()
    # The local listener for adapters on other devices; None: every adapter runs in this process.
    local: LocalListener | None = None
    meters: list[MeterEntry] = Field(default_factory=list)

    def model_post_init(self, _context: object) -> None:
        validate_level(self.concentrator_id, what="concentrator_id")

    @model_validator(mode="after")
    def _unique_meter_ids(self) -> ConcentratorConfig:
        seen: set[str] = set()
        for meter in self.meters:
            meter_id = getattr(meter, "meter_id", None)
            if meter_id is None:
                continue
            if meter_id in seen:
                raise ValueError(f"meter {meter_id}: meter_id appears twice")
            seen.add(meter_id)
        return self
