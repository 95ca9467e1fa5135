"""Group commit: callers that arrive while a database write is in flight share the next one.

On the command path every message used to cost its own statements (a city's lights switched
at dusk: 40,000 inserts, 40,000 updates, 40,000 reads, each a round trip and a few hundred
microseconds of SQLAlchemy's CPU). A :class:`GroupCommit` hands every item that arrived
while the previous flush ran to one call of ``flush``, which answers each of them with one
multi-row statement. Alone, an item is flushed at once (no added wait, so an idle round trip
stays as fast as it was); under load, hundreds share a statement.

A caller returns only after its own item is flushed and gets its own answer (or the flush's
exception), so what it does next (acknowledge an MQTT message, publish a notification) never
runs ahead of the database: the guarantees of one-statement-per-message are kept.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from cloud.held import Held, holding

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

# Items per flush: large enough to spread the statement's cost, small enough for one statement
# (bound variables) and a short transaction.
MAX_BATCH = 500


class GroupCommit(Generic[T, R]):
    """Runs ``flush`` on the items waiting, one flush at a time; ``flush`` answers each item, in order."""

    def __init__(self, flush: Callable[[Sequence[T]], Awaitable[Sequence[R]]], *, name: str,
                 max_batch: int = MAX_BATCH, hold: AsyncEngine | None = None) -> None:
        """``hold``: the flushes' statements on this engine share one connection the writer keeps
        (:mod:`cloud.held`), not one from the pool each."""
        self._flush = flush
        self._held = Held(hold) if hold is not None else None
        self._name = name
        self._max = max_batch
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._writer: asyncio.Task[None] | None = None
        self.flushes = 0
        self.items = 0

    async def __call__(self, item: T) -> R:
        """``item``'s answer, once the flush that carried it is done."""
        answer: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, answer))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._run(), name=f"group-commit-{self._name}")
        return await answer

    async def _run(self) -> None:
        with holding(self._held):
            await self._run_held()

    async def _run_held(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[:self._max], self._waiting[self._max:]
            items = [item for item, _ in batch]
            try:
                answers = await self._flush(items)
                if len(answers) != len(items):
                    raise RuntimeError(f"{self._name}: {len(answers)} answers for {len(items)} items")
            except asyncio.CancelledError:
                for _, waiter in batch:
                    waiter.cancel()
                raise
            except Exception as exc:  # noqa: BLE001 - every caller in the batch gets the failure; the writer goes on
                for _, waiter in batch:
                    if not waiter.done():
                        waiter.set_exception(exc)
                continue
            self.flushes += 1
            self.items += len(items)
            for (_, waiter), answer in zip(batch, answers, strict=True):
                if not waiter.done():
                    waiter.set_result(answer)

    async def close(self) -> None:
        """Wait for the flush in flight (and those queued behind it)."""
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)
        if self._held is not None:
            await self._held.close()


__all__ = ["MAX_BATCH", "GroupCommit"]
