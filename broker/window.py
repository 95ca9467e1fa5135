"""A first-come, first-served window of ``size`` slots for asyncio, O(1) per acquire and release.

The session's in-flight window (:mod:`broker.session`) used ``asyncio.Semaphore``, whose release
(Python 3.11) scans its waiters from the front, past those already woken but not yet run: with
hundreds of publishers waiting (a bulk switch of a fleet), that scan was about a tenth of a
process's CPU. Here a release hands its slot straight to the first waiter still waiting.
"""

from __future__ import annotations

import asyncio
from collections import deque


class Window:
    """At most ``size`` holders at once; waiters are served in arrival order."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("a window needs at least one slot")
        self._free = size
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def free(self) -> int:
        """Slots not held (0 while anyone waits)."""
        return self._free

    async def acquire(self) -> None:
        """Take a slot, waiting for one if none is free; release it with :meth:`release`."""
        while self._waiters and self._waiters[0].done():
            self._waiters.popleft()  # cancelled while waiting
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a slot just as it was cancelled: pass it on
            raise

    def release(self) -> None:
        """Give a slot back: to the first waiter still waiting, else to the free ones."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes to it as it is
                return
        self._free += 1


__all__ = ["Window"]
