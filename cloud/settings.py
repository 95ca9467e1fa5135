"""The cloud's settings: the sections every process shares, and the web API's own.

Every ``gridwire cloud ...`` process is given one settings object derived from
:class:`CloudSettings`: the broker (``mqtt``) and the relational database (``database``),
plus the sections of that process (``ingest``, ``scheduler``, ...; each defined beside the
process's ``run`` in its ``process.py``). :class:`cloud.platform.PlatformSettings` derives from
all of them, so the demo and the tests run every process from one object and no process can
be handed less than it reads.

Environment variables: ``GRIDWIRE_<SECTION>_<FIELD>``, e.g. ``GRIDWIRE_MQTT_HOST``,
``GRIDWIRE_MQTT_CA_FILE``, ``GRIDWIRE_DATABASE_URL``, ``GRIDWIRE_DATABASE_POOL_SIZE``,
``GRIDWIRE_INFLUX_URL``, ``GRIDWIRE_INGEST_BATCH_READINGS``; fields outside a section are
``GRIDWIRE_<FIELD>`` (``GRIDWIRE_JWT_SECRET``). The database section is also read from
``GRIDWIRE_REGISTRY_<FIELD>``, its older name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from broker.sealing import KeyRing
from broker.session import TlsSettings

# The embedded default; production sets a PostgreSQL URL.
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///var/gridwire.sqlite"


class Section(BaseModel):
    """A group of settings read from ``GRIDWIRE_<SECTION>_<FIELD>``."""

    # Unknown fields are ignored: an environment holds variables for other processes too.
    model_config = ConfigDict(extra="ignore", frozen=True)


class MqttSettings(Section):
    """How a process logs in to the broker (``GRIDWIRE_MQTT_*``)."""

    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = "gridwire-cloud"
    password: SecretStr | None = None
    # Set it per process instance (ingest-1, ingest-2, ...) and keep it across restarts, so a
    # restarted process resumes its durable session and gets back what it had not acknowledged.
    # Unset: gridwire-<role>-<host>-<pid>, unique but new on each start. Leave it unset where
    # one settings object serves several processes (the demo).
    client_id: str | None = None
    # TLS: on when ca_file (the CA that signed the broker's certificate) is set; a client
    # certificate and key are optional (the password still logs in).
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    # QoS 1 messages in flight each way, so also how many received messages are handled at
    # once. A few times the database pool: enough to keep it busy, few enough that no handler
    # waits for a connection anywhere near the pool timeout when the database is slow.
    inflight: int = Field(default=100, ge=1, le=65535)

    @model_validator(mode="after")
    def _tls_complete(self) -> Self:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("mqtt cert_file and key_file go together: set both or neither")
        if self.cert_file is not None and self.ca_file is None:
            raise ValueError("a client certificate needs mqtt ca_file (TLS) too")
        return self

    def secret(self) -> str | None:
        return self.password.get_secret_value() if self.password else None

    def tls(self) -> TlsSettings | None:
        """What the session's TLS is given (None: a plain connection)."""
        if self.ca_file is None:
            return None
        return TlsSettings(ca_file=str(self.ca_file), cert_file=str(self.cert_file) if self.cert_file else None,
                           key_file=str(self.key_file) if self.key_file else None)


class DatabaseSettings(Section):
    """The relational database (``GRIDWIRE_DATABASE_*``): registry, commands, schedules,
    monitoring, clock drift, campaigns, the webhook outbox and dead letters."""

    url: str = DEFAULT_DATABASE_URL
    # The connection pool of each process (PostgreSQL; SQLite has none to size).
    pool_size: int = Field(default=10, ge=1)
    # Extra connections are opened and closed per use: under load that costs more than waiting.
    max_overflow: int = Field(default=0, ge=0)
    pool_timeout: float = Field(default=60.0, gt=0)
    # Seconds to open a PostgreSQL connection (asyncpg's own default is 60): a host that drops
    # packets makes a request fail (503) after this, not after a minute.
    connect_timeout: float = Field(default=5.0, gt=0)

    def engine_options(self) -> dict[str, Any]:
        """Keyword arguments for :func:`cloud.registry.db.create_engine` (a pool on PostgreSQL)."""
        from cloud.registry.db import is_sqlite

        if is_sqlite(self.url):
            return {}
        from cloud.held import HELD_PER_PROCESS

        # No ping per checkout (a round trip per transaction); a dropped connection is recycled
        # by the pool's own error handling and the message is redelivered. The group-commit
        # writers' kept connections come on top of ``pool_size`` (cloud.held).
        return {"pool_size": self.pool_size + HELD_PER_PROCESS, "max_overflow": self.max_overflow, "pool_timeout": self.pool_timeout,
                "pool_pre_ping": False, "connect_args": {"timeout": self.connect_timeout}}

    def safe_url(self) -> str:
        """The URL without its password, for logs."""
        from sqlalchemy.engine import make_url

        return make_url(self.url).render_as_string(hide_password=True)


class ConsumptionSettings(Section):
    """Consumption aggregates (``GRIDWIRE_CONSUMPTION_*``), read alike by processing, which makes
    them, and the web API, which serves them (docs/PROCESSING.md)."""

    # The zone whose calendar days and months are aggregated (an IANA name: Europe/Amsterdam).
    # Quarter-hours and hours stay on the UTC grid (the same as local time's wherever the offset
    # is whole hours). Change it only on an empty store: stored days and months keep their start.
    time_zone: str = "UTC"

    @model_validator(mode="after")
    def _known_zone(self) -> Self:
        try:
            ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {self.time_zone!r}") from exc
        return self

    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)


class ProcessingOptions(Section):
    """Processing's settings (``GRIDWIRE_PROCESSING_*``), read by processing and by the web API,
    which recomputes a meter's intervals when a meter exchange is recorded."""

    # How long the broker keeps this process's session while it is away (see ingest's).
    session_expiry: int = Field(default=300, ge=0)
    # Gaps between measured register values up to this long are interpolated.
    max_gap_seconds: float = Field(default=7 * 86_400.0, gt=0)
    # A boundary with measured values this close on both sides counts as measured.
    tolerance_seconds: float = Field(default=30.0, ge=0)
    # Time-stamp sanity: readings this far ahead of the processing's clock, or older, or
    # stamped by a clock possibly this far off, fail validation.
    future_seconds: float = Field(default=300.0, ge=0)
    max_age_seconds: float = Field(default=400 * 86_400.0, gt=0)
    clock_drift_seconds: float = Field(default=60.0, gt=0)
    # As ingest's: readings from senders the registry does not know are skipped (``refuse``),
    # since ingest does not store them; ``accept`` processes them, for commissioning.
    unknown_senders: Literal["refuse", "accept"] = "refuse"
    senders_refresh_seconds: float = Field(default=5.0, gt=0)


class InfluxSettings(Section):
    """The time-series store (``GRIDWIRE_INFLUX_*``), through the InfluxDB v1 HTTP API."""

    url: str = "http://127.0.0.1:8086"
    database: str = "gridwire"
    username: str | None = None
    password: SecretStr | None = None
    # InfluxDB 2.x/3.x: an API token for the v1-compatible endpoints (database = DBRP-mapped bucket).
    token: SecretStr | None = None
    timeout: float = Field(default=10.0, gt=0)
    # Create the database at start if it is missing (the API and ingest).
    create_database: bool = True


class OidcSettings(Section):
    """An external identity provider (``GRIDWIRE_OIDC_*``): the API also accepts its RS256/ES256
    tokens when ``issuer`` is set. Keys come from ``jwks_url`` (default: the issuer's
    ``/.well-known/jwks.json``), cached ``jwks_cache_seconds`` and fetched again for an unknown
    ``kid``; ``audience`` must be in the token's ``aud``; the claim ``org_claim`` names the
    organisation, whose role is then read from the registry."""

    issuer: str | None = None
    audience: str | None = None
    jwks_url: str | None = None
    org_claim: str = "org"
    jwks_cache_seconds: float = Field(default=300.0, gt=0)
    # An unknown kid fetches the keys again at most this often.
    jwks_refetch_seconds: float = Field(default=10.0, ge=0)

    @model_validator(mode="after")
    def _audience_with_issuer(self) -> Self:
        if self.issuer and not self.audience:
            raise ValueError("GRIDWIRE_OIDC_AUDIENCE must be set with GRIDWIRE_OIDC_ISSUER")
        return self

    def keys_url(self) -> str:
        assert self.issuer is not None
        return self.jwks_url or self.issuer.rstrip("/") + "/.well-known/jwks.json"


class FirmwareOptions(Section):
    """The firmware repository (``GRIDWIRE_FIRMWARE_*``), shared by the API and the chunk servers."""

    # Where verified images live: the API adds them, `gridwire cloud firmware-server` reads them.
    store_dir: Path = Path("var/firmware")
    # Public keys whose signatures are trusted: PEM files and/or directories of *.pem, separated
    # by commas. Signing keys never come near the cloud.
    trusted_keys: str = ""
    # The chunk server's session: not durable by default, an unanswered request is asked again.
    session_expiry: int = Field(default=0, ge=0)

    def trusted_key_paths(self) -> list[Path]:
        return [Path(p.strip()) for p in self.trusted_keys.split(",") if p.strip()]


class MetricsSettings(Section):
    """Prometheus metrics (``GRIDWIRE_METRICS_*``): served at ``http://host:port/metrics`` when
    ``port`` is set. Loopback by default; bind the private network to scrape from another host."""

    host: str = "127.0.0.1"
    port: int | None = Field(default=None, ge=0, le=65535)


class LogSettings(Section):
    """Logging (``GRIDWIRE_LOG_*``): ``format`` ``text`` or ``json`` (one JSON object a line, with
    the correlation id of the command or the seq of the reading being handled). The level is the
    command's ``--log-level``."""

    format: Literal["text", "json"] = "text"


class CloudSettings(BaseSettings):
    """What every cloud process is given: the broker and the database, from ``GRIDWIRE_*``."""

    model_config = SettingsConfigDict(env_prefix="GRIDWIRE_", env_nested_delimiter="_", env_nested_max_split=1,
                                      extra="ignore", populate_by_name=True)

    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    # Aliases are full variable names: GRIDWIRE_DATABASE_URL, or GRIDWIRE_REGISTRY_URL (its older name).
    database: DatabaseSettings = Field(default_factory=DatabaseSettings,
                                       validation_alias=AliasChoices("gridwire_database", "gridwire_registry"))
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    # The sealing key ring for the registry's secrets at rest (device secrets: DLMS keys and
    # passwords; organisations' webhook secrets): `<id>:<base64url 32-byte key>`, comma-separated,
    # the first sealing (`gridwire secrets new-key` makes one). Without it none can be stored, and
    # the processes that use them (the API; the domain processes, which sign webhook deliveries)
    # refuse to start while the registry holds any.
    secrets_key: SecretStr | None = None

    def sealing(self) -> KeyRing | None:
        """The sealing key ring, or None when none is set; SealingError for a malformed one."""
        return KeyRing.parse(self.secrets_key.get_secret_value()) if self.secrets_key is not None else None


class ApiSettings(CloudSettings):
    """The web API (``gridwire cloud api``): InfluxDB, bearer tokens, query limits, firmware
    uploads and concentrator provisioning."""

    influx: InfluxSettings = Field(default_factory=InfluxSettings)
    firmware: FirmwareOptions = Field(default_factory=FirmwareOptions)
    oidc: OidcSettings = Field(default_factory=OidcSettings)
    consumption: ConsumptionSettings = Field(default_factory=ConsumptionSettings)
    processing: ProcessingOptions = Field(default_factory=ProcessingOptions)

    # Where `gridwire cloud api` listens (its --host and --port override these).
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8080, ge=1, le=65535)
    # The API brings the database schema to the newest revision at start; other processes never do.
    migrate_on_start: bool = True

    # HS256 secret the bearer tokens are signed with; the API refuses to start without one, or with
    # one shorter than 32 characters or a well-known default (`gridwire admin secret` makes one).
    jwt_secret: SecretStr | None = None
    jwt_issuer: str | None = None

    # OMDP privacy rule: answers with fewer rows than this are refused.
    min_result_rows: int = Field(default=20, ge=1)
    # Answers with more rows than this are served as a bulk download whatever the caller asked.
    bulk_threshold_rows: int = Field(default=10_000, ge=1)
    bulk_link_ttl_seconds: int = Field(default=600, ge=1)
    bulk_chunk_rows: int = Field(default=5_000, ge=1)
    max_page_size: int = Field(default=1_000, ge=1)
    # Request bodies larger than this are refused with 413 (firmware uploads: their own limit,
    # from the largest image).
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)

    # Concentrator provisioning (POST /v1/installation/concentrators/{cid}/provision): the CA's
    # directory (ca.pem, ca.key; None refuses provisioning), the broker's mutual-TLS address given
    # to concentrators, and broker usernames besides mqtt.username that no certificate may carry
    # (comma-separated).
    pki_dir: Path | None = None
    provision_broker_host: str = "localhost"
    provision_broker_port: int = Field(default=8883, ge=1, le=65535)
    broker_reserved_names: str = ""
    # Revocation: where the API writes the CRL the broker's mutual-TLS listener enforces (its
    # crlfile; None: certificates are not revoked, only their accounts), and the broker's pid
    # file, to tell it to re-read the CRL (SIGHUP; None: reload it yourself).
    crl_file: Path | None = None
    broker_pid_file: Path | None = None
    # The broker's TLS listener with password login, as told to apps and MQTT-native devices
    # (POST /v1/organisations/{org}/mqttClients).
    app_broker_host: str = "localhost"
    app_broker_port: int = Field(default=8884, ge=1, le=65535)

    # HTTPS: the API's certificate and key (PEM). Without them the API refuses to start unless
    # api_insecure_http is set (plain HTTP, logged as a warning at start).
    api_tls_cert_file: Path | None = None
    api_tls_key_file: Path | None = None
    api_insecure_http: bool = False


__all__ = ["DEFAULT_DATABASE_URL", "ApiSettings", "CloudSettings", "DatabaseSettings", "FirmwareOptions",
           "InfluxSettings", "LogSettings", "MetricsSettings", "MqttSettings", "OidcSettings", "Section"]
