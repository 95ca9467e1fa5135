"""The core's command dispatcher: authorise generic commands, send them to their device, follow
each to an end.

Messages come in through :class:`cloud.core.consumer.CoreConsumer` (parsed, or dead-lettered).
A command goes QUEUED -> SENT -> (DELIVERED) -> SUCCEEDED | FAILED, or ends TIMEOUT (sent, no
answer within its time-to-live) or EXPIRED (never sent in time): the table and the errors are
in :mod:`cloud.core.lifecycle`. Every final outcome is published on ``core/response/<org>``.
A pump in every process sends commands that are due (retries after a transient failure,
commands that waited for a sequential device) and ends overdue ones; compare-and-set in the
store makes sure each happens once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from broker import topics
from broker.metrics import Registry as MetricsRegistry
from broker.schemas.command import CommandError, CommandResponse, CommandStatus, GenericCommand
from broker.session import MqttSession, publish_properties
from cloud.core import lifecycle
from cloud.core.access import Access, accesses, permission
from cloud.core.commands import CommandRecord, CommandStore, Decided, Outcome
from cloud.core.communication import SuccessLog
from cloud.core.consumer import CORRELATION, DOMAIN, SHARE_GROUP, CommandIn, CoreConsumer, Rejected
from cloud.core.functions import SEQUENTIAL_PROTOCOLS, function_of
from cloud.core.lifecycle import RetryPolicy
from cloud.core.metrics import CoreMetrics
from cloud.core.route_cache import RouteCache
from cloud.deadletters import DeadLetterStore
from cloud.group_commit import GroupCommit
from cloud.held import Held, holding
from cloud.registry import DeviceDecommissioned, DeviceFunction, DeviceNotFound, Registry, Route

log = logging.getLogger(__name__)

S = CommandStatus
# How the fast path decided a command: its route, SENT or FAILED, and why it failed.
Plan = tuple[Route, CommandStatus, CommandError | None]


class CoreDispatcher:
    """One core process: consumes generic commands and device responses, runs the pump."""

    def __init__(self, *, session: MqttSession, registry: Registry, store: CommandStore,
                 dead_letters: DeadLetterStore, retry: RetryPolicy = RetryPolicy(), pump_interval: float = 0.5,
                 share_group: str = SHARE_GROUP, concurrency: int | None = None,
                 metrics: CoreMetrics | None = None) -> None:
        """``concurrency``: messages handled at once on the slow path, each holding a database
        connection (default: unbounded beyond the MQTT in-flight window). The fast path's group
        commits take one connection each, whatever the number of messages they carry."""
        self._session = session
        self._registry = registry
        self._store = store
        self._retry = retry
        self._metrics = metrics or CoreMetrics(MetricsRegistry())
        self._interval = pump_interval
        self._kick = asyncio.Event()
        self._stopping = False
        self._pump_task: asyncio.Task[None] | None = None
        self._routes = RouteCache(lookup=registry.route)
        self._successes = SuccessLog(store.engine, clock=store.now)
        # The common cases (a new command for a device that takes commands concurrently, a
        # device's final answer) share statements with every message that arrives meanwhile.
        self._deciding = GroupCommit(self._decide_many, name=f"core-decide-{session.client_id}", hold=store.engine)
        self._finishing = GroupCommit(self._finish_many, name=f"core-finish-{session.client_id}", hold=store.engine)
        # The rest holds a database connection per message: at most ``concurrency`` at once.
        self._slow: AbstractAsyncContextManager[Any] = (
            asyncio.Semaphore(concurrency) if concurrency is not None else contextlib.nullcontext())
        self.consumer = CoreConsumer(session=session, dead_letters=dead_letters, on_request=self.accept,
                                     on_response=self.settle, share_group=share_group)
        # New commands this process took in (redeliveries not counted): for tests and metrics.
        self.commands_accepted = 0

    async def start(self) -> None:
        """Subscribe and start the pump; the session must be connected."""
        await self.consumer.start()
        self._pump_task = asyncio.create_task(self._pump(), name=f"core-pump-{self._session.client_id}")

    async def close(self, *, grace: float = 5.0) -> None:
        """Stop the pump after its current round (a round cancelled inside a database call can
        strand a pooled connection); a round still running after ``grace`` seconds is cancelled."""
        if self._pump_task is not None:
            self._stopping = True
            self._kick.set()
            try:
                await asyncio.wait_for(asyncio.shield(self._pump_task), grace)
            except TimeoutError:
                self._pump_task.cancel()
            await asyncio.gather(self._pump_task, return_exceptions=True)
        await self._deciding.close()
        await self._finishing.close()
        await self._successes.close()

    # --- requests from the domain layer ------------------------------------------------------------

    async def accept(self, incoming: CommandIn) -> None:
        """Take a new generic command: refuse it, or send it now or once its device is free."""
        decided = await self._decide(incoming)
        if decided is True:
            return
        async with self._slow, self._one_connection():
            await self._accept_slowly(incoming, known=decided or None)

    @contextlib.asynccontextmanager
    async def _one_connection(self) -> AsyncIterator[None]:
        """The store's statements in this task share one connection (a sequential device's
        command runs four or five in turn), returned to the pool at the end."""
        held = Held(self._store.engine)
        try:
            with holding(held):
                yield
        finally:
            await held.close()

    async def _accept_slowly(self, incoming: CommandIn, *, known: Access | None = None) -> None:
        """``known``: the fast path's authorisation check of this command (a sequential device),
        so it is not asked again."""
        command = incoming.command
        # Authorised already: stored due at once (one statement fewer). Either way the send
        # itself is the compare-and-set QUEUED -> SENT under the device's lock.
        due = known is not None and known.decision.allowed
        record, new = await self._store.add(command, correlation_id=incoming.correlation, domain=incoming.domain,
                                            due=due)
        if not new and record.status is not S.QUEUED:
            await self._redelivered(record)
            return
        self.commands_accepted += int(new)
        function = function_of(command.name)
        if function is None:
            await self._finish(record, S.FAILED, error=lifecycle.unsupported(command.name))
            return
        if not due:
            decision = (known.decision if known is not None
                        else await permission(self._registry, incoming.organisation, command.device_id, function))
            if not decision.allowed:
                self._refused(command, incoming.organisation, decision.reason)
                await self._finish(record, S.FAILED, error=lifecycle.not_authorised(decision.reason))
                return
            await self._store.make_due(record.id)
        await self._try_send(record)

    async def _redelivered(self, record: CommandRecord) -> None:
        """A command taken before, by this core or one that died before the broker had what
        followed: announce it again if final (the results consumer completes a request once);
        send it again if in flight to a device that takes commands concurrently (such a device
        answers a repeated command id without acting twice). A sequential device's command is
        not sent twice: it ends TIMEOUT if the first send never left."""
        log.info("command %s redelivered; already %s", record.id, record.status)
        if record.status.final:
            await self._announce(record, record.status, result=record.result, error=record.error)
            return
        if record.status not in lifecycle.IN_FLIGHT or self._store.now() >= record.expires_at:
            return
        try:
            route = await self._routes.route(record.device)
        except (DeviceNotFound, DeviceDecommissioned):
            return  # the pump's sweep ends it
        if route.protocol not in SEQUENTIAL_PROTOCOLS:
            await self._publish_command(record, route)

    async def _decide(self, incoming: CommandIn) -> bool | Access:
        """The fast path: decide a new command for a device that takes commands concurrently and
        store it SENT (then publish it) or FAILED, in a statement shared with the commands that
        arrived meanwhile: True. If the slow path must handle it, False, or for a sequential
        device the access found (the slow path need not ask again); also for an unknown device or
        command, or a redelivery."""
        command = incoming.command
        if function_of(command.name) is None or command.expires_at is None or command.expires_at <= self._store.now():
            return False
        decided = await self._deciding(incoming)
        if decided is None:
            return False
        if isinstance(decided, Access):
            return decided
        route, status, error = decided
        self.commands_accepted += 1
        record = CommandRecord.of_new(command, correlation_id=incoming.correlation, domain=incoming.domain,
                                      status=status)
        if status is S.SENT:
            await self._publish_command(record, route)
        else:
            await self._announce(record, status, result=None, error=error)
        return True

    async def _decide_many(self, batch: Sequence[CommandIn]) -> list[Plan | Access | None]:
        """Authorise a batch (one query per organisation and function) and store the commands of
        devices that take commands concurrently, decided, in one statement; for a sequential
        device's command its access (the slow path sends it), None for the others."""
        wanted: dict[tuple[str, DeviceFunction], list[str]] = {}
        for item in batch:
            function = function_of(item.command.name)
            assert function is not None  # checked by _decide
            wanted.setdefault((item.organisation, function), []).append(item.command.device_id)
        found: dict[tuple[str, DeviceFunction, str], Access] = {}
        for (organisation, function), devices in wanted.items():
            for device, access in (await accesses(self._registry, organisation, devices, function)).items():
                found[(organisation, function, device)] = access
        plans: list[Plan | Access | None] = []
        rows: list[Decided] = []
        for item in batch:
            command = item.command
            access = found[(item.organisation, function_of(command.name), command.device_id)]  # type: ignore[index]
            route = access.route
            if route is None:
                plans.append(None)
                continue
            self._routes.remember(route)
            if route.protocol in SEQUENTIAL_PROTOCOLS:
                plans.append(access)
                continue
            status, error = S.SENT, None
            if not access.decision.allowed:
                self._refused(command, item.organisation, access.decision.reason)
                status, error = S.FAILED, lifecycle.not_authorised(access.decision.reason)
            rows.append(Decided(command=command, correlation_id=item.correlation, domain=item.domain, status=status,
                                error=error))
            plans.append((route, status, error))
        stored = iter(await self._store.add_decided_many(rows) if rows else [])
        # A command stored before (a redelivery) goes the slow way, which knows what it became.
        return [plan if isinstance(plan, Access) or (plan is not None and next(stored)) else None
                for plan in plans]

    @staticmethod
    def _refused(command: GenericCommand, organisation: str, reason: str) -> None:
        log.warning("refused %s on %s for %s: %s", command.name, command.device_id, organisation, reason)

    async def _try_send(self, record: CommandRecord) -> None:
        """Send a queued command if it is still wanted and its device is free."""
        try:
            route = await self._routes.route(record.device)
        except (DeviceNotFound, DeviceDecommissioned) as exc:
            await self._finish(record, S.FAILED, error=lifecycle.unknown_device(str(exc)))
            return
        now = self._store.now()
        if now >= record.expires_at:
            await self._finish(record, S.EXPIRED, error=lifecycle.expired())
            return
        sequential = route.protocol in SEQUENTIAL_PROTOCOLS
        if sequential and not await self._store.lock_device(record.device, record.id):
            return  # another command is in flight to this device; the pump sends this one later
        if not await self._store.mark_sent(record.id):
            current = await self._store.get(record.id)
            if current is not None and current.status is S.QUEUED and now >= current.expires_at:
                await self._finish(current, S.EXPIRED, error=lifecycle.expired())
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
                                                    "priority": str(record.priority),
                                                    # Not read by devices: names the request in their logs.
                                                    CORRELATION: record.correlation_id})
        await self._session.publish(topic, record.to_command().to_wire(), qos=1, properties=props)
        log.debug("sent %s %s to %s", record.name, record.id, topic)

    # --- responses from devices --------------------------------------------------------------------

    async def settle(self, response: CommandResponse) -> None:
        """Take a device's answer: record progress, retry a transient failure, or end the command.
        Rejected for an answer about a command the core did not send to that device."""
        transient = lifecycle.is_transient_failure(response.status, response.error)
        if response.status.final and not transient:
            # The common case in one statement (shared with the answers that arrive meanwhile):
            # end the command, learn what it was, free its device.
            done = await self._finishing(Outcome(command_id=str(response.command_id), device=response.device_id,
                                                 status=response.status, result=response.result,
                                                 error=response.error))
            if done is not None:
                await self._finished(done, response.status, result=response.result, error=response.error,
                                     unlocked=True)
                return
        async with self._slow, self._one_connection():
            await self._settle_slowly(response, transient=transient)

    async def _finish_many(self, outcomes: Sequence[Outcome]) -> list[CommandRecord | None]:
        records = await self._store.finish_many(outcomes)
        held = [r.id for r in records if r is not None and self._routes.may_be_sequential(r.device)]
        if await self._store.unlock_commands(held):
            self._kick.set()  # a command waiting for one of these devices can go now
        return records

    async def _settle_slowly(self, response: CommandResponse, *, transient: bool) -> None:
        record = await self._store.get(str(response.command_id))
        if record is None:
            raise Rejected(f"a response for command {response.command_id}, which the core never sent")
        if response.device_id != record.device:
            raise Rejected(f"the response names device {response.device_id!r}; command {record.id} was for "
                           f"{record.device!r}")
        if response.status is S.DELIVERED:
            await self._store.mark_delivered(record.id)
            return
        if not response.status.final:
            raise Rejected(f"a device may answer DELIVERED or a final status, not {response.status}")
        if record.status.final:
            # Ended already (a late or repeated answer). The core that ended it may have died
            # before announcing it: announce it again, as stored (the results consumer completes once).
            await self._announce(record, record.status, result=record.result, error=record.error)
            return
        if transient and await self._retry_later(record, response.error):
            return
        await self._finish(record, response.status, result=response.result, error=response.error)

    async def _retry_later(self, record: CommandRecord, error: CommandError | None) -> bool:
        """Queue another attempt if attempts and time-to-live allow; True if queued."""
        current = await self._store.get(record.id) or record
        now = self._store.now()
        not_before = self._retry.retry_at(attempts=current.attempts, now=now, expires_at=current.expires_at)
        if not_before is None:
            return False
        if not await self._store.requeue(record.id, not_before=not_before):
            return True  # finished or requeued meanwhile by someone else: nothing more to do here
        if self._routes.may_be_sequential(record.device):
            await self._store.unlock_device(record.device, record.id)
        reason = error.message if error else None
        self._metrics.retried(record.name)
        log.info("command %s failed transiently (%s, attempt %d); retrying in %.2fs", record.id,
                 error.code if error else None, current.attempts, (not_before - now).total_seconds())
        await self._note_communication(record.device, success=False, reason=reason)
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
                        error: CommandError | None, unlocked: bool = False) -> None:
        """After a command became final: free its device (unless ``unlocked`` already), count the
        communication, tell the domain."""
        if not unlocked and self._routes.may_be_sequential(record.device) and await self._store.unlock_command(record.id):
            self._kick.set()  # a command waiting for this device can go now
        if status is S.SUCCEEDED:
            await self._successes.success(record.device)
        elif lifecycle.is_communication_failure(status, error):
            await self._note_communication(record.device, success=False, reason=error.message if error else None)
        await self._announce(record, status, result=result, error=error)

    async def _announce(self, record: CommandRecord, status: CommandStatus, *, result: dict | None,
                        error: CommandError | None) -> None:
        """Publish a command's final outcome on ``core/response/<org>``."""
        now = self._store.now()
        log.debug("command %s (%s on %s) ended %s", record.id, record.name, record.device, status)
        self._metrics.finished(record.name, status.value, record.created_at, now)
        response = CommandResponse(commandId=record.id, deviceId=record.device, status=status, result=result,
                                   error=error, completedAt=now)
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
            status, error = lifecycle.overdue(record.status)
            await self._finish(record, status, error=error)
        await self._store.release_stale_locks()
        await self.send_due()

    async def send_due(self) -> None:
        """Send the queued commands whose wait is over (a device freed, a retry's time come)."""
        for record in await self._store.due():
            await self._try_send(record)

    async def _pump(self) -> None:
        # One task, one statement at a time: it keeps one connection.
        held = Held(self._store.engine)
        try:
            with holding(held):
                await self._pump_rounds()
        finally:
            await held.close()

    async def _pump_rounds(self) -> None:
        loop = asyncio.get_running_loop()
        swept = loop.time()
        while not self._stopping:
            try:
                await asyncio.wait_for(self._kick.wait(), max(0.0, swept + self._interval - loop.time()))
            except TimeoutError:
                pass
            self._kick.clear()
            if self._stopping:
                return
            try:
                # A kick (a device freed, a retry queued) needs only what is due; the sweep for
                # overdue commands and dead commands' locks keeps its interval however often
                # kicks come (it was three statements after every sequential command).
                if loop.time() >= swept + self._interval:
                    swept = loop.time()
                    await self.pump_once()
                else:
                    await self.send_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                # The pump must outlive a database hiccup; the next round tries again.
                log.exception("core pump round failed")
