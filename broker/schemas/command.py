"""The generic command envelope and its response.

A command travels with MQTT 5 properties: correlation data = the command id (16 bytes of
its UUID), response topic = where the answer goes, message expiry = its time-to-live.
The same ids are in the payload, so a hop that loses properties (a bridge, a log) does not
lose the correlation.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from broker.lean.command import COMMAND_NAME_PATTERN, CommandStatus
from broker.schemas.meter_reading import AwareDatetime

__all__ = ["CommandError", "CommandResponse", "CommandStatus", "GenericCommand"]


class CommandError(BaseModel):
    """Why a command failed: a stable code an application can branch on, and a message for people."""

    code: str
    message: str
    transient: bool = False


class GenericCommand(BaseModel):
    """A protocol-neutral command for one device ("set switch 1 closed", "read now")."""

    model_config = ConfigDict(populate_by_name=True)

    command_id: uuid.UUID = Field(alias="commandId", default_factory=uuid.uuid4)
    device_id: str = Field(alias="deviceId", min_length=1, max_length=128)
    name: str = Field(min_length=1, max_length=64, pattern=COMMAND_NAME_PATTERN)
    parameters: dict[str, Any] = Field(default_factory=dict)
    organisation: str | None = None
    priority: int = Field(default=4, ge=0, le=9)
    issued_at: AwareDatetime = Field(alias="issuedAt")
    expires_at: AwareDatetime | None = Field(default=None, alias="expiresAt")

    def correlation_data(self) -> bytes:
        return self.command_id.bytes

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def to_wire(self) -> bytes:
        return self.model_dump_json(by_alias=True, exclude_none=True).encode()


class CommandResponse(BaseModel):
    """The outcome of a GenericCommand, correlated by its id."""

    model_config = ConfigDict(populate_by_name=True)

    command_id: uuid.UUID = Field(alias="commandId")
    device_id: str = Field(alias="deviceId")
    status: CommandStatus
    result: dict[str, Any] | None = None
    error: CommandError | None = None
    completed_at: AwareDatetime = Field(alias="completedAt")

    def to_wire(self) -> bytes:
        return self.model_dump_json(by_alias=True, exclude_none=True).encode()
