"""A command's life, pure: which status may follow which, the errors the core ends commands
with, and when a transient failure is tried again.

The store (:mod:`cloud.core.commands`) guards every change by compare-and-set from the
statuses :func:`sources` names; the dispatcher (:mod:`cloud.core.dispatcher`) decides which
change to ask for. Neither writes the rules down again.

| from      | may become                                      |
|-----------|-------------------------------------------------|
| QUEUED    | SENT, SUCCEEDED, FAILED, TIMEOUT, EXPIRED       |
| SENT      | DELIVERED, QUEUED, SUCCEEDED, FAILED, TIMEOUT, EXPIRED |
| DELIVERED | QUEUED, SUCCEEDED, FAILED, TIMEOUT, EXPIRED     |
| SUCCEEDED, FAILED, TIMEOUT, EXPIRED | nothing: final                    |

A queued command may end without being sent (refused, unknown device, expired) or with an
earlier attempt's late answer; one in flight goes back to QUEUED after a transient failure.
A final status never changes, so a late answer cannot overwrite a timeout.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType

from broker.backoff import Backoff
from broker.errors import Invalid
from broker.schemas.command import CommandError, CommandStatus

S = CommandStatus
FINAL: tuple[CommandStatus, ...] = tuple(s for s in CommandStatus if s.final)
IN_FLIGHT: tuple[CommandStatus, ...] = (S.SENT, S.DELIVERED)
# Statuses a command may still leave.
OPEN: tuple[CommandStatus, ...] = (S.QUEUED, *IN_FLIGHT)

TRANSITIONS: Mapping[CommandStatus, frozenset[CommandStatus]] = MappingProxyType({
    S.QUEUED: frozenset({S.SENT, *FINAL}),
    S.SENT: frozenset({S.DELIVERED, S.QUEUED, *FINAL}),
    S.DELIVERED: frozenset({S.QUEUED, *FINAL}),
    **{final: frozenset() for final in FINAL},
})


class InvalidTransition(Invalid):
    """A status change the lifecycle does not have: a programming error, not a lost race."""

    def __init__(self, current: CommandStatus | str, target: CommandStatus | str) -> None:
        super().__init__(f"a command cannot go from {current} to {target}")
        self.current, self.target = current, target


def can_become(current: CommandStatus, target: CommandStatus) -> bool:
    """Whether a command in ``current`` may move to ``target``."""
    return target in TRANSITIONS[current]


@functools.cache
def sources(target: CommandStatus) -> tuple[CommandStatus, ...]:
    """Every status a command may reach ``target`` from (what a compare-and-set accepts); none: an error."""
    found = tuple(s for s in CommandStatus if target in TRANSITIONS[s])
    if not found:
        raise InvalidTransition("any status", target)
    return found


def ends_from(status: CommandStatus) -> tuple[CommandStatus, ...]:
    """The statuses a command may end in ``status`` from; InvalidTransition if it is not final."""
    if not status.final:
        raise InvalidTransition("an open status", status)
    return sources(status)


def check_new(status: CommandStatus) -> None:
    """A command stored already decided skips QUEUED: it must be one QUEUED may become."""
    if not can_become(S.QUEUED, status):
        raise InvalidTransition(S.QUEUED, status)


# --- why the core ends a command ---------------------------------------------------------------

def expired() -> CommandError:
    return CommandError(code="EXPIRED", message="the command's time-to-live passed before it could be sent")


def timed_out() -> CommandError:
    return CommandError(code="TIMEOUT", message="no answer from the device within the command's time-to-live")


def not_authorised(reason: str) -> CommandError:
    return CommandError(code="NOT_AUTHORISED", message=reason)


def unknown_device(reason: str) -> CommandError:
    return CommandError(code="UNKNOWN_DEVICE", message=reason)


def unsupported(name: str) -> CommandError:
    return CommandError(code="UNSUPPORTED_COMMAND", message=f"the core does not know command {name!r}")


def overdue(status: CommandStatus) -> tuple[CommandStatus, CommandError]:
    """How an open command whose time-to-live has passed ends: EXPIRED if never sent, else TIMEOUT."""
    if status is S.QUEUED:
        return S.EXPIRED, expired()
    if status in IN_FLIGHT:
        return S.TIMEOUT, timed_out()
    raise InvalidTransition(status, "overdue")


def is_transient_failure(status: CommandStatus, error: CommandError | None) -> bool:
    """Whether an answer is a failure worth trying again (the device said so)."""
    return status is S.FAILED and error is not None and error.transient


def is_communication_failure(status: CommandStatus, error: CommandError | None) -> bool:
    """Whether an outcome counts against the device's communication record (not a refusal or a bad command)."""
    return status is S.TIMEOUT or (error is not None and error.code == "DEVICE_UNREACHABLE")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how soon a command is tried again after a transient failure."""

    max_attempts: int = 3
    backoff: Backoff = Backoff(initial=0.5, maximum=30.0)

    def retry_at(self, *, attempts: int, now: datetime, expires_at: datetime) -> datetime | None:
        """When to try a command that has been sent ``attempts`` times again; None: it fails now
        (no attempts left, or the wait would outlast its time-to-live)."""
        if attempts >= self.max_attempts:
            return None
        at = now + timedelta(seconds=self.backoff.delay(attempts - 1))
        return at if at < expires_at else None
