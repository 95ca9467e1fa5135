"""Concentrator status: birth on connect, death as the MQTT will; both retained."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from broker.schemas.meter_reading import AwareDatetime


class MeterHealth(BaseModel):
    """How reading one meter is going, as the concentrator sees it."""

    model_config = ConfigDict(populate_by_name=True)

    meter_id: str = Field(alias="meterId")
    protocol: str
    healthy: bool = True
    last_success: datetime | None = Field(default=None, alias="lastSuccess")
    consecutive_failures: int = Field(default=0, alias="consecutiveFailures")
    last_error: str | None = Field(default=None, alias="lastError")
    # P1: what the port's reader refused since it opened, by reason (crc, truncated, droppedBytes,
    # ...), and why it refused the last one.
    telegram_errors: dict[str, int] | None = Field(default=None, alias="telegramErrors")
    last_telegram_error: str | None = Field(default=None, alias="lastTelegramError")


class OfflinePeriod(BaseModel):
    """The concentrator's last time without the broker, reported once a connection ends it."""

    model_config = ConfigDict(populate_by_name=True)

    since: AwareDatetime  # its start, or its loss of the connection
    seconds: float = Field(ge=0)
    # Messages it put in its outbox meanwhile (readings, events); sent since the connection.
    buffered: int = Field(ge=0)
    # True: it started without the broker (booted offline), not lost a connection.
    boot: bool = False


class OutboxState(BaseModel):
    """The concentrator's outbox against its limit, and what it gave up there since it started
    (at the limit the oldest live values give way first, then load-profile readings, then events)."""

    model_config = ConfigDict(populate_by_name=True)

    messages: int = Field(ge=0)
    limit: int = Field(ge=1)
    level: Literal["OK", "HIGH", "FULL"]  # HIGH from 80% of the limit
    shed_live: int = Field(default=0, ge=0, alias="shedLive")
    shed_profile: int = Field(default=0, ge=0, alias="shedProfile")
    shed_events: int = Field(default=0, ge=0, alias="shedEvents")
    # Messages refused: the outbox was full of messages kept before theirs.
    refused: int = Field(default=0, ge=0)


class LocalIntakeState(BaseModel):
    """What the concentrator's local listener took from external adapters since it started, and
    what it refused (bad payload, unknown meter, a meter not the sender's), by reason code."""

    model_config = ConfigDict(populate_by_name=True)

    accepted: int = Field(default=0, ge=0)
    # Refused messages by MQTT 5 reason code in hex ("0x99": payload format invalid, ...).
    refused: dict[str, int] = Field(default_factory=dict)
    last_refused: str | None = Field(default=None, alias="lastRefused")


class LiveBatchState(BaseModel):
    """Whether the concentrator sends its live readings in batches (its ``live_batch`` option) on
    ``concentrator/{cid}/batch/meterReading`` rather than one per reading on the meters' topics;
    with the window and size a batch goes out at (when enabled only)."""

    model_config = ConfigDict(populate_by_name=True)

    enabled: bool
    window_seconds: float | None = Field(default=None, gt=0, alias="windowSeconds")
    max_readings: int | None = Field(default=None, ge=1, alias="maxReadings")


class ConcentratorStatus(BaseModel):
    """Published retained on ``concentrator/{cid}/status``: ONLINE at birth, OFFLINE as the will."""

    model_config = ConfigDict(populate_by_name=True)

    concentrator_id: str = Field(alias="concentratorId")
    state: Literal["ONLINE", "OFFLINE"]
    timestamp: AwareDatetime
    # Numbers the connection (the concentrator uses milliseconds since the epoch at its connect,
    # so it grows across restarts too); a connection's will and birth carry the same number, so
    # a late will from an older connection can be told apart. 0: not numbered.
    session: int = 0
    software_version: str | None = Field(default=None, alias="softwareVersion")
    meters: list[MeterHealth] = Field(default_factory=list)
    outbox_backlog: int | None = Field(default=None, alias="outboxBacklog")
    outbox: OutboxState | None = None
    # The last offline period a connection ended (ONLINE only): how long, and how much buffered.
    offline: OfflinePeriod | None = None
    # Messages from the cloud the concentrator gave up on since it started: their handler failed
    # on every delivery, so the session acknowledged them after logging them (ONLINE only).
    dead_letters: int | None = Field(default=None, alias="deadLetters")
    reason: str | None = None
    # Share of expected intervals present, per meter per day: {meterId: {"2026-03-02": 0.98}}.
    completeness: dict[str, dict[str, float]] | None = None
    # Readings from external adapters on the local listener (ONLINE, with a listener only).
    local_intake: LocalIntakeState | None = Field(default=None, alias="localIntake")
    # Live readings in batches or not (its live_batch option); absent from older concentrators.
    live_batch: LiveBatchState | None = Field(default=None, alias="liveBatch")

    def to_wire(self) -> bytes:
        return self.model_dump_json(by_alias=True, exclude_none=True).encode()
