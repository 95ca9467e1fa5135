"""The generic command envelope and its response, lean (the contract's pydantic models and how a
command travels: broker/schemas/command.py)."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from broker.lean.base import (Field, Lean, anything, aware_datetime, boolean, identifier, integer, mapping_of, member,
                              model, optional, text)

COMMAND_NAME_PATTERN = r"^[a-z][a-z0-9_]*$"


class CommandStatus(StrEnum):
    QUEUED = "QUEUED"
    SENT = "SENT"
    DELIVERED = "DELIVERED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    TIMEOUT = "TIMEOUT"
    EXPIRED = "EXPIRED"

    @property
    def final(self) -> bool:
        return self in (CommandStatus.SUCCEEDED, CommandStatus.FAILED, CommandStatus.TIMEOUT, CommandStatus.EXPIRED)


class CommandError(Lean):
    """Why a command failed: a stable code an application can branch on, and a message for people."""

    fields = (Field("code", text()), Field("message", text()), Field("transient", boolean, default=False))


class GenericCommand(Lean):
    """A protocol-neutral command for one device ("set switch 1 closed", "read now")."""

    fields = (
        Field("command_id", identifier, alias="commandId", factory=uuid.uuid4),
        Field("device_id", text(min_length=1, max_length=128), alias="deviceId"),
        Field("name", text(min_length=1, max_length=64, pattern=COMMAND_NAME_PATTERN)),
        Field("parameters", mapping_of(anything), factory=dict),
        Field("organisation", optional(text()), default=None),
        Field("priority", integer(ge=0, le=9), default=4),
        Field("issued_at", aware_datetime, alias="issuedAt"),
        Field("expires_at", optional(aware_datetime), alias="expiresAt", default=None),
    )

    def correlation_data(self) -> bytes:
        return self.command_id.bytes

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def to_wire(self) -> bytes:
        return self.dump_json(exclude_none=True)


class CommandResponse(Lean):
    """The outcome of a GenericCommand, correlated by its id."""

    fields = (
        Field("command_id", identifier, alias="commandId"),
        Field("device_id", text(), alias="deviceId"),
        Field("status", member(CommandStatus)),
        Field("result", optional(mapping_of(anything)), default=None),
        Field("error", optional(model(CommandError)), default=None),
        Field("completed_at", aware_datetime, alias="completedAt"),
    )

    def to_wire(self) -> bytes:
        return self.dump_json(exclude_none=True)
