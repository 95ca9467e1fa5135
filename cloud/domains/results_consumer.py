"""The domain layer's results consumer: command outcomes from the core become functional responses.

Subscribed with ``$share/notify/core/response/+``. When every command of a functional
request is final, the request is completed once (compare-and-set in the store; only the
process that wins publishes) and its outcome goes to ``domain/<domain>/response/<org>``, to
the organisation's apps on ``app/<org>/<domain>/<operation>``, and to its webhook (through
the durable outbox: :mod:`cloud.notify.outbox`, sent by :mod:`cloud.notify.delivery`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import UTC, datetime

from pydantic import ValidationError

from broker import topics
from broker.schemas.command import CommandError, CommandResponse, CommandStatus
from broker.session import Message, MqttSession, publish_properties
from cloud.core.commands import CommandRecord
from cloud.core.consumer import CORRELATION
from cloud.domains.base import Domain
from cloud.domains.catalogue import DOMAINS
from cloud.domains.metrics import DomainMetrics
from cloud.domains.requests import PENDING, Completion, FunctionalRecord, RequestStore
from cloud.domains.schemas import FunctionalResponse
from cloud.group_commit import GroupCommit
from cloud.notify.webhook import WebhookSender
from cloud.registry.secrets import DeviceSecrets

log = logging.getLogger(__name__)

SHARE_GROUP = "notify"
# The operation whose success makes a device's pending keys active (a DLMS key change's second phase).
KEY_CHANGE = ("smartmetering", "keyChange")


def outcome(domain: Domain | None, request: FunctionalRecord,
            commands: Iterable[CommandRecord]) -> tuple[CommandStatus, dict | None, CommandError | None]:
    """A functional request's status, result and error from its (all final) commands (pure)."""
    commands = list(commands)
    for command in commands:
        if command.status is not CommandStatus.SUCCEEDED:
            error = command.error or CommandError(code=command.status.value, message=f"{command.name} {command.status}")
            return command.status, None, error
    results = {c.name: c.result for c in commands}
    if domain is not None and request.operation in domain.operations:
        return CommandStatus.SUCCEEDED, domain.operations[request.operation].summarise(results), None
    return CommandStatus.SUCCEEDED, {k: v for k, v in results.items()}, None


class ResultsConsumer:
    """Turns ``core/response/+`` into functional responses, app notifications and webhooks."""

    def __init__(self, *, session: MqttSession, requests: RequestStore, webhooks: WebhookSender | None = None,
                 domains: Iterable[Domain] = DOMAINS.values(), share_group: str = SHARE_GROUP,
                 metrics: DomainMetrics | None = None) -> None:
        self._session = session
        self._metrics = metrics
        self._requests = requests
        self._webhooks = webhooks
        self._domains = {d.name: d for d in domains}
        self._group = share_group
        # Reads and completions shared with the responses that arrive meanwhile (group commits).
        self._reading = GroupCommit(requests.with_commands_many, name=f"results-read-{session.client_id}",
                                    hold=requests.engine)
        self._completing = GroupCommit(requests.complete_many, name=f"results-complete-{session.client_id}",
                                       hold=requests.engine)
        # No sealing key: a confirmed change moves the sealed keys as they are.
        self._secrets = DeviceSecrets(requests.engine, None)

    async def start(self) -> None:
        await self._session.subscribe(topics.shared(self._group, topics.ALL_CORE_RESPONSES), self.handle)

    async def close(self) -> None:
        """Wait for the group commits in flight."""
        await self._reading.close()
        await self._completing.close()

    async def handle(self, message: Message) -> None:
        try:
            response = CommandResponse.model_validate_json(message.payload)
        except ValidationError as exc:
            log.warning("dropping bad core response on %s: %s (payload %r)", message.topic, exc,
                        message.payload[:200])
            return
        correlation = message.user_properties.get(CORRELATION)
        if correlation is None:
            correlation = await self._requests.correlation_of(str(response.command_id))
            if correlation is None:
                log.warning("core response for unknown command %s dropped", response.command_id)
                return
        await self.settle(correlation)

    async def settle(self, correlation_id: str) -> bool:
        """Complete the functional request if all its commands are final; True if this call did it."""
        request, found = await self._reading(correlation_id)
        if request is None or request.status != PENDING:
            return False
        commands = {c.id: c for c in found}
        if any(cid not in commands or not commands[cid].status.final for cid in request.command_ids):
            return False
        ordered = [commands[cid] for cid in request.command_ids]
        status, result, error = outcome(self._domains.get(request.domain), request, ordered)
        body = FunctionalResponse(correlationId=correlation_id, domain=request.domain, operation=request.operation,
                                  deviceId=request.device, status=status, result=result, error=error,
                                  completedAt=datetime.now(UTC)).to_wire()
        if status is CommandStatus.SUCCEEDED and (request.domain, request.operation) == KEY_CHANGE:
            # Before the request completes: killed in between, the redelivered response does it
            # again (a change made active before is left as it is).
            change_id = (ordered[-1].result or {}).get("changeId")
            if isinstance(change_id, str):
                await self._secrets.complete_change(request.device, change_id)
        if self._webhooks is not None:
            # Into the outbox before the request is completed (and so before the core response is
            # acknowledged): a crash at any later point leaves the notification stored. Keyed by the
            # correlation id, so a redelivered response, or a second process settling the same
            # request, stores it once.
            await self._webhooks.submit(request.organisation, body, event=f"{request.domain}.{request.operation}",
                                        key=correlation_id)
        if not await self._completing(Completion(correlation_id, status, result, error)):
            return False
        log.debug("%s/%s on %s completed %s", request.domain, request.operation, request.device, status)
        if self._metrics is not None:
            self._metrics.completed(request.domain, request.operation, str(status), request.created_at)
        props = publish_properties(correlation_data=bytes.fromhex(correlation_id.replace("-", "")))
        # Both sent at once (in this order), then both acknowledgements awaited: one broker round
        # trip, not two, before the response is acknowledged.
        await asyncio.gather(
            self._session.publish(topics.domain_topic(request.domain, "response", request.organisation), body,
                                  qos=1, properties=props),
            self._session.publish(topics.app_topic(request.organisation, request.domain, request.operation), body,
                                  qos=1, properties=props))
        return True
