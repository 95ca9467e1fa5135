"""How often a handler failed on each received message, so a session can give up on one.

MQTT 5 redelivers an unacknowledged message only on a new connection, and may give it another
packet id, so a message is known by its topic and a checksum of its payload. A message stays
unacknowledged while it fails, so the broker's receive maximum bounds how many are counted;
the tables are bounded anyway.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from broker.errors import Unavailable
from broker.mqtt_types import Message

_KEPT = 10_000


def is_transient(exc: BaseException) -> bool:
    """True if a handler failed for want of a collaborator (a database, InfluxDB, a socket), not
    because of its message: later may work, so the message waits however long that takes and the
    failure does not count towards giving up on it."""
    return isinstance(exc, Unavailable | OSError)  # TimeoutError and ConnectionError are OSErrors


@dataclass(slots=True)
class Failures:
    """A message's failed deliveries so far."""

    total: int = 0
    counted: int = 0  # the ones not transient: only these count towards giving up


def _identity(message: Message) -> tuple[str, int]:
    return message.topic, zlib.crc32(message.payload)


class Redeliveries:
    """Failed deliveries per message, and messages given up on whose acknowledgement was lost."""

    def __init__(self, *, kept: int = _KEPT) -> None:
        self._kept = kept
        self._failures: dict[tuple[str, int], Failures] = {}
        self._settled: dict[tuple[str, int], None] = {}

    @property
    def active(self) -> bool:
        """True once any message failed: only then is a message's identity worth computing."""
        return bool(self._failures or self._settled)

    def failed(self, message: Message, *, transient: bool = False) -> Failures:
        """Count one more failed delivery of ``message``; return its failures so far."""
        key = _identity(message)
        failures = self._failures.pop(key, None) or Failures()
        failures.total += 1
        failures.counted += not transient
        self._put(self._failures, key, failures)
        return failures

    def succeeded(self, message: Message) -> None:
        self._failures.pop(_identity(message), None)

    def settled(self, message: Message, *, acknowledged: bool) -> None:
        """``message`` was given up on (dead-lettered); if its acknowledgement could not be sent,
        acknowledge its next delivery without handling it again."""
        key = _identity(message)
        self._failures.pop(key, None)
        if not acknowledged:
            self._put(self._settled, key, None)

    def take_settled(self, message: Message) -> bool:
        """True (once) if ``message`` was given up on and only needs acknowledging."""
        key = _identity(message)
        if key in self._settled:
            del self._settled[key]
            return True
        return False

    def _put(self, table: dict, key: tuple[str, int], value: object) -> None:
        if len(table) >= self._kept:
            del table[next(iter(table))]  # the oldest
        table[key] = value
