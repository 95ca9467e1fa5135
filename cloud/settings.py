"""Configuration of the cloud services, read from ``GRIDWIRE_*`` environment variables (or passed in)."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything the cloud API and its store need; e.g. ``GRIDWIRE_INFLUX_URL``, ``GRIDWIRE_JWT_SECRET``."""

    model_config = SettingsConfigDict(env_prefix="GRIDWIRE_", env_file=None, extra="ignore")

    influx_url: str = "http://127.0.0.1:8086"
    influx_database: str = "gridwire"
    influx_username: str | None = None
    influx_password: SecretStr | None = None
    # InfluxDB 2.x/3.x: an API token for the v1-compatible endpoints (database = DBRP-mapped bucket).
    influx_token: SecretStr | None = None
    influx_timeout: float = Field(default=10.0, gt=0)
    influx_create_database: bool = True

    # HS256 secret the bearer tokens are signed with; the API refuses to start without one.
    jwt_secret: SecretStr | None = None
    jwt_issuer: str | None = None

    # OMDP privacy rule: answers with fewer rows than this are refused.
    min_result_rows: int = Field(default=20, ge=1)
    # Answers with more rows than this are served as a bulk download whatever the caller asked.
    bulk_threshold_rows: int = Field(default=10_000, ge=1)
    bulk_link_ttl_seconds: int = Field(default=600, ge=1)
    bulk_chunk_rows: int = Field(default=5_000, ge=1)
    max_page_size: int = Field(default=1_000, ge=1)
