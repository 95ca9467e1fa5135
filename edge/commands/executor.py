"""The concentrator's command executor: runs the core's generic commands on local devices.

It subscribes to ``concentrator/<cid>/command``, answers EXPIRED for a command whose
time-to-live has passed (without running it), runs the handler registered for the device
and command name under a per-device lock (a meter talks to one client at a time), and
answers on the response topic with the correlation data it was given. Adapters (DLMS,
Modbus) plug in through :meth:`CommandExecutor.register`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from broker import topics
from broker.lean import ContractError
from broker.lean.command import CommandError, CommandResponse, CommandStatus, GenericCommand
from broker.session import Message, MqttSession, publish_properties
from edge.commands.errors import CommandFailed, ErrorCode

log = logging.getLogger(__name__)

CommandHandler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def _utcnow() -> datetime:
    return datetime.now(UTC)


async def execute(command: GenericCommand, handlers: Mapping[str, CommandHandler] | None, *,
                  now: datetime) -> CommandResponse:
    """Run one command with the device's handlers and say how it went (never raises for a device fault)."""

    def failed(code: str, message: str, *, transient: bool = False,
               status: CommandStatus = CommandStatus.FAILED) -> CommandResponse:
        return CommandResponse(commandId=command.command_id, deviceId=command.device_id, status=status,
                               error=CommandError(code=code, message=message, transient=transient),
                               completedAt=_utcnow())

    if command.expired(now):
        return failed(ErrorCode.EXPIRED, "the command's time-to-live passed before it reached the device",
                      status=CommandStatus.EXPIRED)
    if handlers is None:
        return failed(ErrorCode.UNKNOWN_DEVICE, f"device {command.device_id!r} is not served by this concentrator")
    handler = handlers.get(command.name)
    if handler is None:
        return failed(ErrorCode.UNSUPPORTED_COMMAND,
                      f"device {command.device_id!r} does not support {command.name!r}")
    try:
        result = await handler(dict(command.parameters))
    except CommandFailed as exc:
        return failed(exc.code, exc.message, transient=exc.transient)
    except (ValueError, KeyError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
        return failed(ErrorCode.INVALID_PARAMETERS, f"{type(exc).__name__}: {exc}")
    except (TimeoutError, ConnectionError, OSError) as exc:
        return failed(ErrorCode.DEVICE_UNREACHABLE, f"{type(exc).__name__}: {exc}", transient=True)
    return CommandResponse(commandId=command.command_id, deviceId=command.device_id,
                           status=CommandStatus.SUCCEEDED, result=result, completedAt=_utcnow())


class CommandExecutor:
    """Serves ``concentrator/<cid>/command`` for the devices registered with it."""

    def __init__(self, *, session: MqttSession, concentrator_id: str,
                 clock: Callable[[], datetime] = _utcnow) -> None:
        self._session = session
        self.concentrator_id = topics.validate_level(concentrator_id, what="concentrator id")
        self._clock = clock
        self._handlers: dict[str, Mapping[str, CommandHandler]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.executed = 0

    def register(self, device_id: str, handlers: Mapping[str, CommandHandler]) -> None:
        """Serve ``device_id`` with ``handlers`` (command name -> async callable(params) -> result)."""
        self._handlers[device_id] = dict(handlers)
        self._locks.setdefault(device_id, asyncio.Lock())

    def unregister(self, device_id: str) -> None:
        self._handlers.pop(device_id, None)

    def route(self) -> None:
        """Set up the command subscription before the session connects, so commands the broker
        redelivers at once after a restart (unacknowledged when we died) are executed."""
        self._session.route(topics.concentrator_command(self.concentrator_id), self.handle)

    async def start(self) -> None:
        """Subscribe to this concentrator's command topic (the session must be connected)."""
        await self._session.subscribe(topics.concentrator_command(self.concentrator_id), self.handle)

    async def handle(self, message: Message) -> None:
        try:
            command = GenericCommand.parse(message.payload)
        except ContractError as exc:
            log.warning("dropping bad command on %s: %s (payload %r)", message.topic, exc, message.payload[:200])
            return
        handlers = self._handlers.get(command.device_id)
        if handlers is None or command.expired(self._clock()):
            response = await execute(command, handlers, now=self._clock())
        else:
            async with self._locks[command.device_id]:
                # Checked again: waiting for the lock may have used up the time-to-live.
                response = await execute(command, handlers, now=self._clock())
        if response.status is CommandStatus.SUCCEEDED:
            self.executed += 1
        else:
            log.info("command %s %s on %s: %s", command.name, command.command_id, command.device_id,
                     response.error.code if response.error else response.status)
        response_topic = message.response_topic or topics.concentrator_response(self.concentrator_id)
        props = publish_properties(correlation_data=message.correlation_data or command.correlation_data())
        await self._session.publish(response_topic, response.to_wire(), qos=1, properties=props)
