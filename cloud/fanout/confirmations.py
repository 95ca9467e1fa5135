"""Ingest's confirmations, as the fan-out sees them: which (concentrator, sequence number) are stored.

Ingest publishes a :class:`~broker.schemas.DeliveryAck` on ``concentrator/{cid}/ack`` once a
batch is written (or a message dead-lettered). The fan-out reads every one of them (not shared:
each fan-out process may hold any concentrator's readings) and releases the readings it holds
for those sequence numbers. A confirmation usually comes after the reading it confirms; one
that comes first (the fan-out lagging behind) is remembered for ``remember_seconds``, in two
generations of dicts, so memory stays bounded by the confirmation rate times that time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

_Key = tuple[str, int]


class Confirmations:
    """Waiters for ingest's confirmations and the confirmations nobody waited for yet."""

    def __init__(self, *, remember_seconds: float = 300.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._remember = remember_seconds
        self._clock = clock
        self._waiters: dict[_Key, asyncio.Future[None]] = {}
        self._current: set[_Key] = set()
        self._previous: set[_Key] = set()
        self._rotated_at = clock()
        self.confirmed_count = 0

    def confirmed(self, concentrator: str, seqs: Iterable[int]) -> None:
        """Ingest says these of ``concentrator``'s messages are done with."""
        self._rotate()
        for seq in seqs:
            key = (concentrator, seq)
            waiter = self._waiters.pop(key, None)
            if waiter is not None:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                self._current.add(key)
            self.confirmed_count += 1

    async def wait(self, concentrator: str, seq: int, *, timeout: float) -> bool:
        """True once ingest confirmed ``seq`` of ``concentrator`` (at once if it did already);
        False if it did not within ``timeout`` seconds."""
        key = (concentrator, seq)
        if key in self._current:
            self._current.discard(key)
            return True
        if key in self._previous:
            self._previous.discard(key)
            return True
        waiter = self._waiters.get(key)
        if waiter is None:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters[key] = waiter
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except TimeoutError:
            if self._waiters.get(key) is waiter:
                del self._waiters[key]
            return False
        return True

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def _rotate(self) -> None:
        now = self._clock()
        if now - self._rotated_at >= self._remember / 2:
            self._previous, self._current = self._current, set()
            self._rotated_at = now
