"""The generic domain consumer: functional requests in, generic commands out to the core.

Subscribed with ``$share/domain-<name>/domain/<name>/request/+`` for each domain it serves,
so several processes split a domain's requests. A request becomes one or more commands on
``core/request/<org>`` (correlation data = the command id, response topic
``core/response/<org>``, message expiry = the request's time-to-live). Command ids derive
from the request's correlation id, so a redelivered request yields the same commands and the
core stores them once. A request that cannot be translated is answered FAILED at once.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from pydantic import ValidationError

from broker.errors import Invalid
from broker import topics
from broker.schemas.command import CommandError, CommandStatus, GenericCommand
from broker.session import Message, MqttSession, publish_properties
from cloud.core.consumer import CORRELATION, DOMAIN
from cloud.domains.base import Domain, command_ids
from cloud.domains.catalogue import DOMAINS
from cloud.domains.requests import NewFunctional, RequestStore
from cloud.domains.schemas import FunctionalRequest, FunctionalResponse

log = logging.getLogger(__name__)

# User property the web API sets on a request it recorded before publishing it, so the consumer
# skips a second write. An application publishing directly that sets it falsely only loses
# its own request's result (it is never recorded, so never completed).
RECORDED = "gw-recorded"


class TranslationError(Invalid):
    """A functional request whose operation or parameters the domain does not accept."""


def translate(domain: Domain, organisation: str, request: FunctionalRequest) -> list[GenericCommand]:
    """The generic commands ``request`` becomes (pure); TranslationError if it cannot."""
    try:
        specs = domain.operation(request.operation).commands(request.parameters)
    except KeyError as exc:
        raise TranslationError(str(exc.args[0])) from exc
    except ValidationError as exc:
        raise TranslationError(f"invalid parameters for {request.operation}: {exc.errors(include_url=False)}") from exc
    expires = request.issued_at + timedelta(seconds=request.ttl_seconds)
    ids = command_ids(str(request.correlation_id), len(specs))
    return [GenericCommand(commandId=cid, deviceId=request.device_id, name=spec.name, parameters=spec.parameters,
                           organisation=organisation, priority=request.priority, issuedAt=request.issued_at,
                           expiresAt=expires) for cid, spec in zip(ids, specs, strict=True)]


def recorded(domain: Domain, organisation: str, request: FunctionalRequest,
             commands: list[GenericCommand]) -> NewFunctional:
    """What is stored of ``request``: who asked what of which device, and its command ids."""
    return NewFunctional(correlation_id=str(request.correlation_id), organisation=organisation,
                         device=request.device_id, domain=domain.name, operation=request.operation,
                         command_ids=[str(c.command_id) for c in commands])


class DomainConsumer:
    """Serves the functional requests of ``domains`` (all known domains by default)."""

    def __init__(self, *, session: MqttSession, requests: RequestStore,
                 domains: Iterable[Domain] = DOMAINS.values()) -> None:
        self._session = session
        self._requests = requests
        self._domains = {d.name: d for d in domains}

    async def start(self) -> None:
        for name in self._domains:
            await self._session.subscribe(topics.shared(f"domain-{name}", topics.domain_requests(name)), self.handle)

    async def handle(self, message: Message) -> None:
        try:
            parsed = topics.parse(message.topic)
            request = _from_schedule(FunctionalRequest.model_validate_json(message.payload), message)
        except (topics.TopicError, ValidationError, ValueError) as exc:
            log.warning("dropping bad functional request on %s: %s (payload %r)", message.topic, exc,
                        message.payload[:200])
            return
        domain = self._domains.get(parsed.domain or "")
        organisation = parsed.organisation
        if domain is None or organisation is None:
            log.warning("functional request on %s for a domain not served here; dropped", message.topic)
            return
        try:
            commands = translate(domain, organisation, request)
        except TranslationError as exc:
            await self._refuse(domain, organisation, request, str(exc))
            return
        if message.user_properties.get(RECORDED) != "1":
            await self._requests.add(recorded(domain, organisation, request, commands))
        await self.send(domain, organisation, request, commands)

    async def send(self, domain: Domain, organisation: str, request: FunctionalRequest,
                   commands: list[GenericCommand]) -> None:
        """Publish ``commands`` to the core, each acknowledged by the broker before the next."""
        for command in commands:
            remaining = (request.issued_at + timedelta(seconds=request.ttl_seconds) - datetime.now(UTC))
            props = publish_properties(
                correlation_data=command.correlation_data(),
                response_topic=topics.core_topic("response", organisation),
                message_expiry=max(1, int(remaining.total_seconds())),
                user_properties={CORRELATION: str(request.correlation_id), DOMAIN: domain.name,
                                 "operation": request.operation})
            await self._session.publish(topics.core_topic("request", organisation), command.to_wire(), qos=1,
                                        properties=props)
            log.debug("%s/%s on %s: sent %s %s to the core", domain.name, request.operation, request.device_id,
                      command.name, command.command_id)

    async def _refuse(self, domain: Domain, organisation: str, request: FunctionalRequest, reason: str) -> None:
        log.warning("functional request %s refused: %s", request.correlation_id, reason)
        error = CommandError(code="INVALID_PARAMETERS", message=reason)
        await self._requests.add(recorded(domain, organisation, request, []))
        await self._requests.complete(str(request.correlation_id), status=CommandStatus.FAILED, result=None,
                                      error=error)
        response = FunctionalResponse(correlationId=request.correlation_id, domain=domain.name,
                                      operation=request.operation, deviceId=request.device_id,
                                      status=CommandStatus.FAILED, error=error, completedAt=datetime.now(UTC))
        await self._session.publish(topics.domain_topic(domain.name, "response", organisation), response.to_wire(),
                                    qos=1, properties=publish_properties(correlation_data=uuid.UUID(
                                        str(request.correlation_id)).bytes))


def _from_schedule(request: FunctionalRequest, message: Message) -> FunctionalRequest:
    """A request the scheduler published: the same stored payload every run, so each run's
    issue time is the run's due time (its TTL counts from then, not from when the schedule was
    made) and its correlation id derives from the run's idempotency key (a republished run
    stays one request)."""
    due = message.user_properties.get("scheduledFor")
    key = message.user_properties.get("idempotencyKey")
    if due is None or key is None:
        return request
    return request.model_copy(update={"issued_at": datetime.fromisoformat(due),
                                      "correlation_id": uuid.uuid5(uuid.NAMESPACE_URL, key)})
