"""The core's MQTT in: each message parsed once into what the dispatcher acts on, or dead-lettered.

Subscriptions (shared, so any number of core processes split the work)::

    $share/core/core/request/+            GenericCommand from a domain layer (org in the topic)
    $share/core/concentrator/+/response   CommandResponse from a concentrator's executor
    $share/core/device/+/response         CommandResponse from an MQTT-native device

A message the core cannot act on (a payload that is no command or response, an answer for a
command the core never sent) is written to the dead-letter store with the reason before it
is acknowledged, like a bad reading: it is kept, and the loop goes on. If the store cannot
take it, the handler fails and the broker delivers the message again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import ValidationError

from broker import topics
from broker.errors import Invalid
from broker.schemas import DeadLetter
from broker.schemas.command import CommandResponse, GenericCommand
from broker.session import Message, MqttSession
from cloud.deadletters import DeadLetterStore

log = logging.getLogger(__name__)
T = TypeVar("T")

SHARE_GROUP = "core"
# The name the core's dead letters carry.
CONSUMER = "core"
# User properties a command brings to the core, and its outcome on core/response/<org> carries back.
CORRELATION = "correlationId"
DOMAIN = "domain"


class Rejected(Invalid):
    """A message the core cannot act on; the reason goes into its dead-letter record."""


@dataclass(frozen=True, slots=True)
class CommandIn:
    """A generic command as it reached the core: the command, who asked, and on whose behalf."""

    command: GenericCommand  # its organisation is the topic's, whatever the payload claimed
    organisation: str
    correlation: str  # the functional request it is part of
    domain: str


def parse_request(message: Message) -> CommandIn:
    """The command on ``core/request/<org>``; Rejected if the topic or payload is not one."""
    try:
        organisation = topics.parse(message.topic).organisation
        command = GenericCommand.model_validate_json(message.payload)
    except topics.TopicError as exc:
        raise Rejected(f"not a core request topic: {exc}") from exc
    except ValidationError as exc:
        raise Rejected(f"not a generic command: {_errors(exc)}") from exc
    if organisation is None:
        raise Rejected(f"no organisation in the topic {message.topic}")
    # The topic says who asked (the broker's ACL guards it); the payload may not claim otherwise.
    command = command.model_copy(update={"organisation": organisation})
    return CommandIn(command=command, organisation=organisation,
                     correlation=message.user_properties.get(CORRELATION) or str(command.command_id),
                     domain=message.user_properties.get(DOMAIN, "core"))


def parse_response(message: Message) -> CommandResponse:
    """The command response in ``message``; Rejected if the payload is not one."""
    try:
        return CommandResponse.model_validate_json(message.payload)
    except ValidationError as exc:
        raise Rejected(f"not a command response: {_errors(exc)}") from exc


def _errors(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'payload'}: {e['msg']}" for e in exc.errors(include_url=False))


class CoreConsumer:
    """Subscribes the core's filters and hands each parsed message on; dead-letters what it or
    the handler rejects. ``concurrency``: messages handled at once (None: as many as MQTT
    flow control lets in)."""

    def __init__(self, *, session: MqttSession, dead_letters: DeadLetterStore,
                 on_request: Callable[[CommandIn], Awaitable[None]],
                 on_response: Callable[[CommandResponse], Awaitable[None]],
                 share_group: str = SHARE_GROUP, concurrency: int | None = None) -> None:
        self._session = session
        self._dead_letters = dead_letters
        self._on_request = on_request
        self._on_response = on_response
        self._group = share_group
        # Set it to about the database pool size: the rest then wait here, in memory, instead of
        # queueing on the pool's checkout, whose timeout would fail the message.
        self._gate: AbstractAsyncContextManager[Any] = (
            asyncio.Semaphore(concurrency) if concurrency is not None else contextlib.nullcontext())
        self.dead_lettered = 0

    async def start(self) -> None:
        """Subscribe; the session must be connected."""
        await self._session.subscribe(topics.shared(self._group, topics.ALL_CORE_REQUESTS), self.handle_request)
        for responses in (topics.ALL_CONCENTRATOR_RESPONSES, topics.ALL_DEVICE_RESPONSES):
            await self._session.subscribe(topics.shared(self._group, responses), self.handle_response)

    async def handle_request(self, message: Message) -> None:
        await self._handle(message, parse_request, self._on_request)

    async def handle_response(self, message: Message) -> None:
        await self._handle(message, parse_response, self._on_response)

    async def _handle(self, message: Message, parse: Callable[[Message], T],
                      act: Callable[[T], Awaitable[None]]) -> None:
        """``act`` on the parsed message; dead-letter it if parsing or acting rejects it."""
        async with self._gate:
            try:
                await act(parse(message))
            except Rejected as exc:
                await self._reject(message, str(exc))

    async def _reject(self, message: Message, reason: str) -> None:
        payload = bytes(message.payload)
        log.warning("core: dead-lettering message on %s: %s (payload %r)", message.topic, reason, payload[:200])
        await self._dead_letters.add(DeadLetter.of(topic=message.topic, payload=payload, reason=reason,
                                                   received_at=datetime.now(UTC), consumer=CONSUMER))
        self.dead_lettered += 1
