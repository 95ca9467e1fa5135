"""Concentrator status (birth and will), lean (the contract's pydantic models: broker/schemas/status.py)."""

from __future__ import annotations

from broker.lean.base import (Field, Lean, any_datetime, aware_datetime, boolean, constant, integer, list_of,
                              mapping_of, model, number, optional, text)


class MeterHealth(Lean):
    """How reading one meter is going, as the concentrator sees it."""

    fields = (
        Field("meter_id", text(), alias="meterId"),
        Field("protocol", text()),
        Field("healthy", boolean, default=True),
        Field("last_success", optional(any_datetime), alias="lastSuccess", default=None),
        Field("consecutive_failures", integer(), alias="consecutiveFailures", default=0),
        Field("last_error", optional(text()), alias="lastError", default=None),
        Field("telegram_errors", optional(mapping_of(integer())), alias="telegramErrors", default=None),
        Field("last_telegram_error", optional(text()), alias="lastTelegramError", default=None),
    )


class OfflinePeriod(Lean):
    """The concentrator's last time without the broker, reported once a connection ends it."""

    fields = (
        Field("since", aware_datetime),
        Field("seconds", number(ge=0)),
        Field("buffered", integer(ge=0)),
        Field("boot", boolean, default=False),
    )


class OutboxState(Lean):
    """The concentrator's outbox against its limit, and what it gave up there since it started."""

    fields = (
        Field("messages", integer(ge=0)),
        Field("limit", integer(ge=1)),
        Field("level", constant("OK", "HIGH", "FULL")),
        Field("shed_live", integer(ge=0), alias="shedLive", default=0),
        Field("shed_profile", integer(ge=0), alias="shedProfile", default=0),
        Field("shed_events", integer(ge=0), alias="shedEvents", default=0),
        Field("refused", integer(ge=0), default=0),
    )


class LocalIntakeState(Lean):
    """What the concentrator's local listener took from external adapters, and what it refused."""

    fields = (
        Field("accepted", integer(ge=0), default=0),
        Field("refused", mapping_of(integer()), factory=dict),
        Field("last_refused", optional(text()), alias="lastRefused", default=None),
    )


class LiveBatchState(Lean):
    """Whether the concentrator sends its live readings in batches, with the window and size."""

    fields = (
        Field("enabled", boolean),
        Field("window_seconds", optional(number(gt=0)), alias="windowSeconds", default=None),
        Field("max_readings", optional(integer(ge=1)), alias="maxReadings", default=None),
    )


class ConcentratorStatus(Lean):
    """Published retained on ``concentrator/{cid}/status``: ONLINE at birth, OFFLINE as the will."""

    fields = (
        Field("concentrator_id", text(), alias="concentratorId"),
        Field("state", constant("ONLINE", "OFFLINE")),
        Field("timestamp", aware_datetime),
        Field("session", integer(), default=0),
        Field("software_version", optional(text()), alias="softwareVersion", default=None),
        Field("meters", list_of(model(MeterHealth)), factory=list),
        Field("outbox_backlog", optional(integer()), alias="outboxBacklog", default=None),
        Field("outbox", optional(model(OutboxState)), default=None),
        Field("offline", optional(model(OfflinePeriod)), default=None),
        Field("dead_letters", optional(integer()), alias="deadLetters", default=None),
        Field("reason", optional(text()), default=None),
        Field("completeness", optional(mapping_of(mapping_of(number()))), default=None),
        Field("local_intake", optional(model(LocalIntakeState)), alias="localIntake", default=None),
        Field("live_batch", optional(model(LiveBatchState)), alias="liveBatch", default=None),
    )

    def to_wire(self) -> bytes:
        return self.dump_json(exclude_none=True)
