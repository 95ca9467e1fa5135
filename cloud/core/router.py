"""The core layer: authorise generic commands, route them to a device, follow them to an end.

Subscriptions (shared, so any number of core processes split the work)::

    $share/core/core/request/+            GenericCommand from a domain layer (org in the topic)
    $share/core/concentrator/+/response   CommandResponse from a concentrator's executor
    $share/core/device/+/response         CommandResponse from an MQTT-native device

A command goes QUEUED -> SENT -> (DELIVERED) -> SUCCEEDED | FAILED, or ends TIMEOUT (sent,
no answer within its time-to-live) or EXPIRED (never sent in time). Every final outcome is
published on ``core/response/<org>``. A pump in every process sends commands that are due
(retries after a transient failure, commands that waited for a sequential device) and ends
overdue ones; compare-and-set in the store makes sure each happens once.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

from pydantic import ValidationError

from broker import topics
from broker.schemas.command import CommandError, CommandResponse, CommandStatus, GenericCommand
from broker.session import Backoff, Message, MqttSession, publish_properties
from cloud.core.access import accesses, permission
from cloud.core.commands import CommandRecord, CommandStore
from cloud.core.communication import SuccessLog
from cloud.core.functions import SEQUENTIAL_PROTOCOLS, function_of
from cloud.registry import DeviceDecommissioned, DeviceNotFound, Registry, Route

log = logging.getLogger(__name__)

S = CommandStatus
SHARE_GROUP = "core"
# A route change (a meter moved to another concentrator) is seen within this time.
ROUTE_CACHE_SECONDS = 30.0
ROUTE_CACHE_SIZE = 100_000
# User properties that travel with a command and its response through the core.
CORRELATION = "correlationId"
DOMAIN = "domain"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how soon a command is tried again after a transient failure."""

    max_attempts: int = 3
    backoff: Backoff = Backoff(initial=0.5, maximum=30.0)


class CoreRouter:
    """One core process: consumes generic commands and device responses, runs the pump."""

    def __init__(self, *, session: MqttSession, registry: Registry, store: CommandStore,
                 retry: RetryPolicy = RetryPolicy(), pump_interval: float = 0.5,
                 share_group: str = SHARE_GROUP, concurrency: int | None = None) -> None:
        """``concurrency``: messages handled at once (default: unbounded beyond the MQTT
        in-flight window). Set it to about the database pool size: the rest then wait here, in
        memory, instead of queueing on the pool's checkout, whose timeout fails the message."""
        self._session = session
        self._gate = asyncio.Semaphore(concurrency) if concurrency is not None else None
        self._registry = registry
        self._store = store
        self._retry = retry
        self._interval = pump_interval
        self._group = share_group
        self._kick = asyncio.Event()
        self._pump_task: asyncio.Task[None] | None = None
        self._routes: dict[str, tuple[float, Route]] = {}
        self._successes = SuccessLog(store.engine, clock=store.now)
        # New commands this process took in (redeliveries not counted): for tests and metrics.
        self.commands_accepted = 0

    async def start(self) -> None:
        """Subscribe and start the pump; the session must be connected."""
        await self._session.subscribe(topics.shared(self._group, topics.ALL_CORE_REQUESTS), self._gated(self.handle_request))
        on_response = self._gated(self.handle_response)
        await self._session.subscribe(topics.shared(self._group, topics.ALL_CONCENTRATOR_RESPONSES), on_response)
        await self._session.subscribe(topics.shared(self._group, topics.ALL_DEVICE_RESPONSES), on_response)
        self._pump_task = asyncio.create_task(self._pump(), name=f"core-pump-{self._session.client_id}")

    def _gated(self, handler: Callable[[Message], Awaitable[None]]) -> Callable[[Message], Awaitable[None]]:
        """``handler`` run by at most ``concurrency`` messages at once."""
        gate = self._gate
        if gate is None:
            return handler

        async def gated(message: Message) -> None:
            async with gate:
                await handler(message)

        return gated

    async def close(self) -> None:
        if self._pump_task is not None:
            self._pump_task.cancel()
            await asyncio.gather(self._pump_task, return_exceptions=True)
        await self._successes.close()

    # --- requests from the domain layer ------------------------------------------------------------

    async def handle_request(self, message: Message) -> None:
        try:
            organisation = topics.parse(message.topic).organisation
            command = GenericCommand.model_validate_json(message.payload)
        except (topics.TopicError, ValidationError) as exc:
            log.warning("dropping bad command on %s: %s (payload %r)", message.topic, exc, message.payload[:200])
            return
        assert organisation is not None
        # The topic says who asked (the broker's ACL guards it); the payload may not claim otherwise.
        command = command.model_copy(update={"organisation": organisation})
        correlation = message.user_properties.get(CORRELATION) or str(command.command_id)
        domain = message.user_properties.get(DOMAIN, "core")
        if await self._decide(command, organisation=organisation, correlation=correlation, domain=domain):
            return
        record, new = await self._store.add(command, correlation_id=correlation, domain=domain)
        if not new and record.status is not S.QUEUED:
            log.info("command %s redelivered; already %s", record.id, record.status)
            return
        self.commands_accepted += int(new)
        function = function_of(command.name)
        if function is None:
            await self._finish(record, S.FAILED, error=CommandError(
                code="UNSUPPORTED_COMMAND", message=f"the core does not know command {command.name!r}"))
            return
        decision = await permission(self._registry, organisation, command.device_id, function)
        if not decision.allowed:
            log.warning("refused %s on %s for %s: %s", command.name, command.device_id, organisation, decision.reason)
            await self._finish(record, S.FAILED, error=CommandError(code="NOT_AUTHORISED", message=decision.reason))
            return
        await self._store.make_due(record.id)
        await self._try_send(record)

    async def _decide(self, command: GenericCommand, *, organisation: str, correlation: str, domain: str) -> bool:
        """The fast path: decide a new command for a device that takes commands concurrently and
        store it SENT (then publish it) or FAILED in one statement. False if the slow path must
        handle it: a sequential device, an unknown device or command, or a redelivery."""
        function = function_of(command.name)
        if function is None or command.expires_at is None or command.expires_at <= self._store.now():
            return False
        found = (await accesses(self._registry, organisation, [command.device_id], function))[command.device_id]
        route, decision = found.route, found.decision
        if route is None or route.protocol in SEQUENTIAL_PROTOCOLS:
            return False
        self._remember(route)
        if decision.allowed:
            if not await self._store.add_decided(command, correlation_id=correlation, domain=domain, status=S.SENT):
                return False
            self.commands_accepted += 1
            record = CommandRecord.of_new(command, correlation_id=correlation, domain=domain, status=S.SENT)
            await self._publish_command(record, route)
            return True
        log.warning("refused %s on %s for %s: %s", command.name, command.device_id, organisation, decision.reason)
        error = CommandError(code="NOT_AUTHORISED", message=decision.reason)
        if not await self._store.add_decided(command, correlation_id=correlation, domain=domain, status=S.FAILED,
                                             error=error):
            return False
        self.commands_accepted += 1
        record = CommandRecord.of_new(command, correlation_id=correlation, domain=domain, status=S.FAILED)
        await self._announce(record, S.FAILED, result=None, error=error)
        return True

    async def _route(self, device: str) -> Route:
        """The device's route, cached briefly: a burst of commands to a fleet need not ask each time."""
        now = time.monotonic()
        cached = self._routes.get(device)
        if cached is not None and cached[0] > now:
            return cached[1]
        route = await self._registry.route(device)
        self._remember(route)
        return route

    def _remember(self, route: Route) -> None:
        if len(self._routes) > ROUTE_CACHE_SIZE:
            self._routes.clear()
        self._routes[route.device_id] = (time.monotonic() + ROUTE_CACHE_SECONDS, route)

    def _sequential(self, device: str) -> bool:
        """Whether ``device`` may hold a device lock (unknown: assume so, unlocking is harmless)."""
        cached = self._routes.get(device)
        return cached is None or cached[1].protocol in SEQUENTIAL_PROTOCOLS

    async def _try_send(self, record: CommandRecord) -> None:
        """Send a queued command if it is still wanted and its device is free."""
        try:
            route = await self._route(record.device)
        except (DeviceNotFound, DeviceDecommissioned) as exc:
            await self._finish(record, S.FAILED, error=CommandError(code="UNKNOWN_DEVICE", message=str(exc)))
            return
        now = self._store.now()
        if now >= record.expires_at:
            await self._finish(record, S.EXPIRED, error=CommandError(
                code="EXPIRED", message="the command's time-to-live passed before it could be sent"))
            return
        sequential = route.protocol in SEQUENTIAL_PROTOCOLS
        if sequential and not await self._store.lock_device(record.device, record.id):
            return  # another command is in flight to this device; the pump sends this one later
        if not await self._store.mark_sent(record.id):
            current = await self._store.get(record.id)
            if current is not None and current.status is S.QUEUED and now >= current.expires_at:
                await self._finish(current, S.EXPIRED, error=CommandError(
                    code="EXPIRED", message="the command's time-to-live passed before it could be sent"))
            elif sequential and current is not None and current.status.final:
                await self._store.unlock_device(record.device, record.id)
            return
        await self._publish_command(record, route)

    async def _publish_command(self, record: CommandRecord, route: Route) -> None:
        if route.concentrator_id is not None:
            topic = topics.concentrator_command(route.concentrator_id)
            response_topic = topics.concentrator_response(route.concentrator_id)
        else:
            topic = topics.device_topic(route.device_id, "command")
            response_topic = topics.device_topic(route.device_id, "response")
        remaining = (record.expires_at - self._store.now()).total_seconds()
        props = publish_properties(correlation_data=uuid.UUID(record.id).bytes, response_topic=response_topic,
                                   message_expiry=max(1, math.ceil(remaining)),
                                   user_properties={"organisation": record.organisation,
                                                    "priority": str(record.priority)})
        await self._session.publish(topic, record.to_command().to_wire(), qos=1, properties=props)
        log.debug("sent %s %s to %s", record.name, record.id, topic)

    # --- responses from devices --------------------------------------------------------------------

    async def handle_response(self, message: Message) -> None:
        try:
            response = CommandResponse.model_validate_json(message.payload)
        except ValidationError as exc:
            log.warning("dropping bad response on %s: %s (payload %r)", message.topic, exc, message.payload[:200])
            return
        if response.status.final and not (response.status is S.FAILED and response.error is not None
                                          and response.error.transient):
            # The common case in one statement: end the command, learn what it was.
            done = await self._store.finish_returning(str(response.command_id), response.status,
                                                      device=response.device_id, result=response.result,
                                                      error=response.error)
            if done is not None:
                await self._finished(done, response.status, result=response.result, error=response.error)
                return
        record = await self._store.get(str(response.command_id))
        if record is None:
            log.warning("response on %s for unknown command %s dropped", message.topic, response.command_id)
            return
        if response.device_id != record.device:
            log.warning("response on %s names device %s, command %s was for %s; dropped", message.topic,
                        response.device_id, record.id, record.device)
            return
        if response.status is S.DELIVERED:
            await self._store.mark_delivered(record.id)
            return
        if response.status in (S.QUEUED, S.SENT):
            log.warning("response with non-final status %s for %s ignored", response.status, record.id)
            return
        if response.status is S.FAILED and response.error is not None and response.error.transient \
                and await self._retry_later(record, response.error):
            return
        await self._finish(record, response.status, result=response.result, error=response.error)

    async def _retry_later(self, record: CommandRecord, error: CommandError) -> bool:
        """Queue another attempt if attempts and time-to-live allow; True if queued."""
        current = await self._store.get(record.id) or record
        if current.attempts >= self._retry.max_attempts:
            return False
        delay = self._retry.backoff.delay(current.attempts - 1)
        not_before = self._store.now() + timedelta(seconds=delay)
        if not_before >= current.expires_at:
            return False
        if not await self._store.requeue(record.id, not_before=not_before):
            return True  # finished or requeued meanwhile by someone else: nothing more to do here
        if self._sequential(record.device):
            await self._store.unlock_device(record.device, record.id)
        log.info("command %s failed transiently (%s, attempt %d); retrying in %.2fs", record.id, error.code,
                 current.attempts, delay)
        await self._note_communication(record.device, success=False, reason=error.message)
        self._kick.set()
        return True

    async def _finish(self, record: CommandRecord, status: CommandStatus, *, result: dict | None = None,
                      error: CommandError | None = None) -> None:
        """End a command (once) and tell the domain layer; a late second outcome is ignored."""
        if not await self._store.finish(record.id, status, result=result, error=error):
            log.info("command %s already final; %s ignored", record.id, status)
            return
        await self._finished(record, status, result=result, error=error)

    async def _finished(self, record: CommandRecord, status: CommandStatus, *, result: dict | None,
                        error: CommandError | None) -> None:
        """After a command became final: free its device, count the communication, tell the domain."""
        if self._sequential(record.device) and await self._store.unlock_command(record.id):
            self._kick.set()  # a command waiting for this device can go now
        if status is S.SUCCEEDED:
            await self._successes.success(record.device)
        elif status is S.TIMEOUT or (error is not None and error.code == "DEVICE_UNREACHABLE"):
            await self._note_communication(record.device, success=False, reason=error.message if error else None)
        await self._announce(record, status, result=result, error=error)

    async def _announce(self, record: CommandRecord, status: CommandStatus, *, result: dict | None,
                        error: CommandError | None) -> None:
        """Publish a command's final outcome on ``core/response/<org>``."""
        response = CommandResponse(commandId=record.id, deviceId=record.device, status=status, result=result,
                                   error=error, completedAt=self._store.now())
        props = publish_properties(correlation_data=uuid.UUID(record.id).bytes,
                                   user_properties={CORRELATION: record.correlation_id, DOMAIN: record.domain})
        await self._session.publish(topics.core_topic("response", record.organisation), response.to_wire(),
                                    qos=1, properties=props)

    async def _note_communication(self, device: str, *, success: bool, reason: str | None = None) -> None:
        try:
            await self._registry.record_communication(device, success=success, reason=reason)
        except DeviceNotFound:
            pass

    # --- the pump -----------------------------------------------------------------------------------

    async def pump_once(self) -> None:
        """End overdue commands, free locks of dead commands, send what is due."""
        for record in await self._store.overdue():
            if record.status is S.QUEUED:
                await self._finish(record, S.EXPIRED, error=CommandError(
                    code="EXPIRED", message="the command's time-to-live passed before it could be sent"))
            else:
                await self._finish(record, S.TIMEOUT, error=CommandError(
                    code="TIMEOUT", message="no answer from the device within the command's time-to-live"))
        await self._store.release_stale_locks()
        for record in await self._store.due():
            await self._try_send(record)

    async def _pump(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._kick.wait(), self._interval)
            except TimeoutError:
                pass
            self._kick.clear()
            try:
                await self.pump_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                # The pump must outlive a database hiccup; the next round tries again.
                log.exception("core pump round failed")
