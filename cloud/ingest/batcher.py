"""Groups readings from many MQTT messages into few InfluxDB writes, and tells each message
when its readings are stored, so it is acknowledged only then.

Readings arrive already encoded as line protocol (the consumer encodes while it validates),
so a flush only joins strings. Up to ``max_writes`` writes are in flight while the next batch
fills: handlers keep encoding and submitting during the HTTP round trips, and the broker's
receive maximum bounds how much can pile up. Batches may be stored in any order: a message's
readings are in one batch, and its acknowledgement and confirmation wait for that batch only.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from broker.session import Backoff
from cloud.ingest.metrics import IngestMetrics
from cloud.store.errors import StoreRejected, StoreUnavailable

log = logging.getLogger(__name__)

# Writes line-protocol lines (``InfluxStore.write_lines``; ``write_readings`` accepts them too).
Writer = Callable[[Sequence[str]], Awaitable[int]]
# Told, after a write and before any message is acknowledged, which concentrator messages
# (by sequence number) are now stored: the end-to-end confirmation the edge waits for.
Confirm = Callable[[dict[str, list[int]]], Awaitable[None]]
# Told once when a message's readings are stored and confirmed (None), or why not.
Done = Callable[[Exception | None], None]


@dataclass(slots=True)
class _Entry:
    lines: Sequence[str]
    concentrator_id: str | None
    seq: int | None
    done: Done
    settled: bool = False


class WriteBatcher:
    """Flushes when ``max_readings`` are waiting or ``max_delay`` passed since the first.

    While the store is unavailable it retries the same batch with capped backoff and does
    not resolve anyone: messages stay unacknowledged, the broker's receive maximum stops the
    flow, and the durable session holds the rest. If the store rejects a batch (bad data),
    the batch is split per message so one bad message cannot hold back the others; the
    rejected message's future gets the StoreRejected and its handler dead-letters it.
    """

    def __init__(self, *, write: Writer, max_readings: int = 10_000, max_delay: float = 0.1,
                 backoff: Backoff = Backoff(initial=0.2, maximum=5.0), confirm: Confirm | None = None,
                 max_writes: int = 1, metrics: IngestMetrics | None = None) -> None:
        if max_writes < 1:
            raise ValueError("max_writes must be at least 1")
        self._write = write
        self._metrics = metrics
        self.max_writes = max_writes
        self._confirm = confirm
        self.max_readings = max_readings
        self.max_delay = max_delay
        self._backoff = backoff
        self._pending: list[_Entry] = []
        self._count = 0
        self._full = asyncio.Event()
        self._first = asyncio.Event()
        self.written = 0
        self.batches = 0
        self.retries = 0

    @property
    def pending(self) -> int:
        """Readings submitted and waiting for the next write."""
        return self._count

    def set_confirm(self, confirm: Confirm) -> None:
        self._confirm = confirm

    async def submit(self, lines: Sequence[str], *, concentrator_id: str | None, seq: int | None = None) -> None:
        """Return once ``lines`` (one message's readings, encoded) are stored, and confirmed
        to their concentrator when the message carried a sequence number; raise
        StoreRejected if the store refuses them."""
        stored: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.add(lines, concentrator_id=concentrator_id, seq=seq, done=functools.partial(_resolve, stored))
        await stored

    def add(self, lines: Sequence[str], *, concentrator_id: str | None, seq: int | None, done: Done) -> None:
        """:meth:`submit` without waiting: ``done`` is told once, with None when ``lines`` are
        stored and confirmed, else with the StoreRejected (or the confirmation's failure)."""
        self._pending.append(_Entry(lines, concentrator_id, seq, done))
        self._count += len(lines)
        self._first.set()
        if self._count >= self.max_readings:
            self._full.set()

    async def run(self) -> None:
        slots = asyncio.Semaphore(self.max_writes)
        async with asyncio.TaskGroup() as writes:
            while True:
                await self._first.wait()
                try:
                    await asyncio.wait_for(self._full.wait(), self.max_delay)
                except TimeoutError:
                    pass
                # While every write slot is busy the batch goes on growing (written in bodies
                # of the store's batch size), so nothing waits for a flush that could start.
                await slots.acquire()
                batch, self._pending, self._count = self._pending, [], 0
                self._first.clear()
                self._full.clear()
                writes.create_task(self._flush_in(slots, batch), name="ingest-write")

    async def _flush_in(self, slots: asyncio.Semaphore, batch: list[_Entry]) -> None:
        try:
            await self._flush(batch)
        finally:
            slots.release()

    async def _flush(self, batch: list[_Entry]) -> None:
        try:
            await self._write_with_retry(batch)
        except StoreRejected as exc:
            if len(batch) == 1:
                _fail(batch[0], exc)
                return
            stored = []
            for entry in batch:
                try:
                    await self._write_with_retry([entry])
                except StoreRejected as single:
                    _fail(entry, single)
                else:
                    stored.append(entry)
            await self._finish(stored)
            return
        await self._finish(batch)

    async def _finish(self, stored: list[_Entry]) -> None:
        if self._confirm is not None:
            confirmations: dict[str, list[int]] = {}
            for entry in stored:
                if entry.seq is not None and entry.concentrator_id is not None:
                    confirmations.setdefault(entry.concentrator_id, []).append(entry.seq)
            if confirmations:
                try:
                    await self._confirm(confirmations)
                except Exception as exc:  # noqa: BLE001 - handed to every waiting handler
                    # Stored but not confirmed: the messages stay unacknowledged and come back;
                    # storing them again is harmless.
                    for entry in stored:
                        _fail(entry, exc)
                    return
        for entry in stored:
            _succeed(entry)

    async def _write_with_retry(self, batch: list[_Entry]) -> None:
        lines = [line for entry in batch for line in entry.lines]
        attempt = 0
        while True:
            try:
                started = time.perf_counter()
                await self._write(lines)
                self.written += len(lines)
                self.batches += 1
                if self._metrics is not None:
                    self._metrics.written(lines, time.perf_counter() - started)
                return
            except StoreUnavailable as exc:
                delay = self._backoff.delay(attempt)
                attempt += 1
                self.retries += 1
                log.warning("store unavailable (%s); retrying %d readings in %.1fs", exc, len(lines), delay)
                await asyncio.sleep(delay)


def _succeed(entry: _Entry) -> None:
    _settle(entry, None)


def _fail(entry: _Entry, exc: Exception) -> None:
    _settle(entry, exc)


def _settle(entry: _Entry, failure: Exception | None) -> None:
    if entry.settled:
        return
    entry.settled = True
    try:
        entry.done(failure)
    except Exception:  # noqa: BLE001 - one bad callback must not leave the batch's others unsettled
        log.exception("settling a stored message failed")


def _resolve(stored: asyncio.Future[None], failure: Exception | None) -> None:
    if stored.done():
        return  # its submitter was cancelled
    if failure is None:
        stored.set_result(None)
    else:
        stored.set_exception(failure)
