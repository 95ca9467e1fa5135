"""Submitting functional requests from the web API: authorise, translate, record, publish.

The domain routes (``cloud/api/routes/<domain>.py``) get a :class:`Submitter` per request
(``SubmitterDep``). Authorisation is checked here, before anything is published (NotAuthorised
naming the reason); the core checks it again. A request the domain cannot translate raises
TranslationError (Invalid).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from broker import logs, topics
from broker.session import MqttSession, publish_properties
from cloud.core.access import permission, permissions
from cloud.domains.base import Domain
from cloud.domains.consumer import RECORDED, recorded, translate
from cloud.domains.requests import RequestStore
from cloud.domains.schemas import Accepted, AcceptedFor, BulkAccepted, FunctionalRequest
from cloud.registry import DeviceFunction, FunctionGroup, NotAuthorised, Registry
from cloud.registry.functions import within_scope

log = logging.getLogger(__name__)

# A bulk refusal names this many devices and counts the rest.
MAX_REASONS = 10
# Devices per bulk request: large enough for a feeder or a city district, small enough for one answer.
MAX_BULK_DEVICES = 10_000


class Submitter:
    """Everything a domain route needs to accept a functional request (a dependency)."""

    def __init__(self, *, org: str, registry: Registry, requests: RequestStore, mqtt: MqttSession,
                 ttl_seconds: int = 300, priority: int = 4, scope: frozenset[FunctionGroup] | None = None) -> None:
        self.org, self.registry, self.requests, self.mqtt = org, registry, requests, mqtt
        self.ttl_seconds, self.priority = ttl_seconds, priority
        # The function groups the caller's credential is limited to (None: not limited).
        self.scope = scope

    async def authorise(self, domain: Domain, operation: str, device_id: str) -> None:
        """NotAuthorised (403, with the reason) unless the caller may ask for ``operation`` on the
        device: for a route that prepares something (a pending key) before it submits."""
        function = domain.operation(operation).function
        self._within_scope(function)
        decision = await permission(self.registry, self.org, device_id, function)
        if not decision.allowed:
            log.warning("refused %s/%s on %s for %s: %s", domain.name, operation, device_id, self.org,
                        decision.reason)
            raise NotAuthorised(decision.reason)

    def _within_scope(self, function: DeviceFunction) -> None:
        decision = within_scope(self.scope, function)
        if not decision.allowed:
            log.warning("refused %s for %s: %s", function, self.org, decision.reason)
            raise NotAuthorised(decision.reason)

    async def submit(self, domain: Domain, operation: str, device_id: str, parameters: dict[str, Any]) -> Accepted:
        """Authorise, translate, record and publish one functional request; 202 body."""
        function = domain.operation(operation).function
        self._within_scope(function)
        decision = await permission(self.registry, self.org, device_id, function)
        if not decision.allowed:
            log.warning("refused %s/%s on %s for %s: %s", domain.name, operation, device_id, self.org,
                        decision.reason)
            raise NotAuthorised(decision.reason)
        request = FunctionalRequest(deviceId=device_id, operation=operation, parameters=parameters,
                                    priority=self.priority, ttlSeconds=self.ttl_seconds, issuedAt=datetime.now(UTC))
        commands = translate(domain, self.org, request)  # TranslationError (Invalid): 422
        logs.bind(correlation=str(request.correlation_id))
        log.info("accepted %s/%s on %s for %s as %d command(s)", domain.name, operation, device_id, self.org,
                 len(commands))
        # Recorded before publishing, so the result URL answers PENDING at once.
        await self.requests.add(recorded(domain, self.org, request, commands))
        await self.mqtt.publish(topics.domain_topic(domain.name, "request", self.org), request.to_wire(), qos=1,
                                properties=publish_properties(correlation_data=request.correlation_id.bytes,
                                                              message_expiry=self.ttl_seconds,
                                                              user_properties={RECORDED: "1"}))
        return Accepted(correlationId=request.correlation_id,
                        resultUrl=f"/v1/{domain.name}/results/{request.correlation_id}")

    async def submit_many(self, domain: Domain, operation: str, device_ids: Sequence[str],
                          parameters: dict[str, Any]) -> BulkAccepted:
        """The same operation on many devices: one functional request per device (each with its own
        result and notification), authorised in one query, recorded in one transaction. All or
        nothing: if the caller may not do it on any one device, nothing is recorded or published."""
        devices = list(dict.fromkeys(device_ids))
        function = domain.operation(operation).function
        self._within_scope(function)
        decisions = await permissions(self.registry, self.org, devices, function)
        refused = [f"{d}: {decisions[d].reason}" for d in devices if not decisions[d].allowed]
        if refused:
            log.warning("refused bulk %s/%s on %d of %d devices for %s", domain.name, operation, len(refused),
                        len(devices), self.org)
            more = f" (and {len(refused) - MAX_REASONS} more)" if len(refused) > MAX_REASONS else ""
            raise NotAuthorised("; ".join(refused[:MAX_REASONS]) + more)
        now = datetime.now(UTC)
        requests = [FunctionalRequest(deviceId=d, operation=operation, parameters=parameters, priority=self.priority,
                                      ttlSeconds=self.ttl_seconds, issuedAt=now) for d in devices]
        translated = [translate(domain, self.org, r) for r in requests]
        await self.requests.add_many([recorded(domain, self.org, r, commands)
                                      for r, commands in zip(requests, translated, strict=True)])
        topic = topics.domain_topic(domain.name, "request", self.org)
        await asyncio.gather(*(self.mqtt.publish(topic, r.to_wire(), qos=1, properties=publish_properties(
            correlation_data=r.correlation_id.bytes, message_expiry=self.ttl_seconds,
            user_properties={RECORDED: "1"})) for r in requests))
        return BulkAccepted(requests=[
            AcceptedFor(deviceId=r.device_id, correlationId=r.correlation_id,
                        resultUrl=f"/v1/{domain.name}/results/{r.correlation_id}") for r in requests])
