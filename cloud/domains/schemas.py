"""Messages of the domain layer: functional requests and responses, and the web API bodies."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from broker.schemas.command import CommandError
from broker.schemas.meter_reading import AwareDatetime


class _Wire(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    def to_wire(self) -> bytes:
        return self.model_dump_json(by_alias=True, exclude_none=True).encode()


class FunctionalRequest(_Wire):
    """What an application asks of a domain for one device, on ``domain/<d>/request/<org>``."""

    correlation_id: uuid.UUID = Field(alias="correlationId", default_factory=uuid.uuid4)
    device_id: str = Field(alias="deviceId", min_length=1, max_length=64)
    operation: str = Field(min_length=1, max_length=64)
    parameters: dict[str, Any] = Field(default_factory=dict)
    priority: int = Field(default=4, ge=0, le=9)
    ttl_seconds: int = Field(default=300, alias="ttlSeconds", ge=1, le=7 * 24 * 3600)
    issued_at: AwareDatetime = Field(alias="issuedAt")


class FunctionalResponse(_Wire):
    """The outcome of a functional request, on ``domain/<d>/response/<org>`` and ``app/<org>/<d>/<op>``."""

    correlation_id: uuid.UUID = Field(alias="correlationId")
    domain: str
    operation: str
    device_id: str = Field(alias="deviceId")
    status: str
    result: dict[str, Any] | None = None
    error: CommandError | None = None
    completed_at: AwareDatetime | None = Field(default=None, alias="completedAt")


class Accepted(_Wire):
    """The 202 answer: where to look for the result."""

    correlation_id: uuid.UUID = Field(alias="correlationId")
    result_url: str = Field(alias="resultUrl")


class AcceptedFor(Accepted):
    """One device's request in a bulk answer."""

    device_id: str = Field(alias="deviceId")


class BulkAccepted(_Wire):
    """The 202 answer to a bulk request: one functional request per device, each with its result URL."""

    requests: list[AcceptedFor]


class CommandPublic(_Wire):
    """One generic command of a request, as the results endpoint shows it."""

    command_id: str = Field(alias="commandId")
    name: str
    status: str
    attempts: int
    error: CommandError | None = None


class RequestResult(FunctionalResponse):
    """A functional request's state as the results endpoint shows it (status PENDING until done)."""

    created_at: datetime = Field(alias="createdAt")
    commands: list[CommandPublic] = Field(default_factory=list)
