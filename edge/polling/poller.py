"""The concentrator's meter poller: reads each meter on its own schedule and tracks its health.

Protocol-independent: it drives :class:`~edge.polling.source.MeterSource` objects and hands
their readings to an injected sink (the durable outbox). Apart from calling ``read`` and the
sink it only schedules: aligned ticks with jitter, one request at a time per meter, a bounded
number per bus, capped exponential backoff for transient failures, health per meter.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from broker.backoff import Backoff
from broker.lean import MeterHealth, MeterReading
from edge.polling.errors import MeterError
from edge.polling.health import HealthTracker
from edge.polling.source import MeterSource
from edge.polling.timing import jitter_delay, next_tick

logger = logging.getLogger(__name__)

Sink = Callable[[MeterReading], Awaitable[None]]
RecoveredHook = Callable[[str, datetime, datetime], Awaitable[None]]


class MeterPoller:
    """Reads many meters concurrently, each at its own interval, and keeps their health.

    ``sink`` gets every reading, in order per meter; an exception from it stops the poller,
    because a failing outbox is not a meter problem to retry around. ``on_recovered(meter_id,
    down_since, now)`` runs as its own task when a meter answers after failures; it must take
    :meth:`exclusive` itself if it talks to the meter (the gap-backfill read does).
    """

    def __init__(
        self,
        *,
        sink: Sink,
        on_recovered: RecoveredHook | None = None,
        bus_limits: Mapping[str, int] | None = None,
        default_bus_limit: int = 1,
        jitter: float = 0.1,
        backoff: Backoff | None = None,
        unhealthy_after: int = 3,
        rng: random.Random | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if default_bus_limit < 1 or any(limit < 1 for limit in (bus_limits or {}).values()):
            raise ValueError("bus limits must be >= 1")
        jitter_delay(1.0, jitter, 0.0)  # validates the fraction early
        self._sink = sink
        self._on_recovered = on_recovered
        self._bus_limits = dict(bus_limits or {})
        self._default_bus_limit = default_bus_limit
        self._jitter = jitter
        self._backoff = backoff or Backoff(initial=1.0, maximum=60.0)
        self._rng = rng or random.Random()
        self._wall = wall_clock
        self._health = HealthTracker(unhealthy_after=unhealthy_after)
        self._sources: dict[str, MeterSource] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._semaphores: dict[str, asyncio.Semaphore] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._group: asyncio.TaskGroup | None = None
        self._runner: asyncio.Task[None] | None = None
        # Hook tasks started while no task group runs (poll_now on a stopped poller).
        self._loose_tasks: set[asyncio.Task[None]] = set()
        self._started = asyncio.Event()
        self._stopping = False

    # --- configuration ----------------------------------------------------------------------

    def add(self, source: MeterSource) -> None:
        """Add a meter; if the poller runs, its schedule starts at once."""
        if source.meter_id in self._sources:
            raise ValueError(f"meter {source.meter_id!r} is already polled")
        if source.interval <= 0:
            raise ValueError(f"meter {source.meter_id!r}: interval must be positive")
        self._sources[source.meter_id] = source
        self._health.register(source.meter_id, getattr(source, "protocol", "unknown"))
        if self._group is not None:
            self._spawn(source)

    def add_all(self, sources: Iterable[MeterSource]) -> None:
        for source in sources:
            self.add(source)

    async def remove(self, meter_id: str) -> None:
        """Stop polling a meter and forget its health."""
        self._sources.pop(meter_id, None)
        self._health.forget(meter_id)
        task = self._tasks.pop(meter_id, None)
        if task is not None:
            task.cancel()
            await _settle(task, [task])

    @property
    def meter_ids(self) -> list[str]:
        return sorted(self._sources)

    # --- exclusivity (shared with command handlers) -------------------------------------------

    def lock_for(self, meter_id: str) -> asyncio.Lock:
        """The lock that makes requests to one meter exclusive (a DLMS association is)."""
        return self._locks.setdefault(meter_id, asyncio.Lock())

    def bus_semaphore(self, bus: str) -> asyncio.Semaphore:
        """The semaphore bounding how many requests run at once on one bus."""
        if bus not in self._semaphores:
            self._semaphores[bus] = asyncio.Semaphore(self._bus_limits.get(bus, self._default_bus_limit))
        return self._semaphores[bus]

    @asynccontextmanager
    async def exclusive(self, meter_id: str, bus: str | None = None) -> AsyncIterator[None]:
        """Hold the meter's lock and a slot on its bus; commands to a meter go through this.

        The meter lock is taken first so a request waiting for its meter holds no bus slot.
        """
        if bus is None:
            source = self._sources.get(meter_id)
            if source is None:
                raise KeyError(f"unknown meter {meter_id!r}; pass its bus")
            bus = source.bus
        async with self.lock_for(meter_id), self.bus_semaphore(bus):
            yield

    # --- health ------------------------------------------------------------------------------

    def health(self) -> list[MeterHealth]:
        return self._health.all()

    def totals(self) -> dict[str, tuple[str, int, int, float]]:
        """Per meter: (protocol, reads succeeded, reads failed, seconds in successful reads)."""
        return self._health.totals()

    def health_of(self, meter_id: str) -> MeterHealth:
        return self._health.snapshot(meter_id)

    # --- running -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Poll until cancelled."""
        async with asyncio.TaskGroup() as group:
            self._group = group
            try:
                for source in list(self._sources.values()):
                    self._spawn(source)
                self._started.set()
                await asyncio.Event().wait()
            finally:
                self._group = None
                self._started.clear()

    async def start(self) -> None:
        """Run in a background task; returns once every meter's schedule is running."""
        if self._runner is not None:
            raise RuntimeError("poller already started")
        self._runner = asyncio.create_task(self.run(), name="meter-poller")
        started = asyncio.create_task(self._started.wait())
        await asyncio.wait({self._runner, started}, return_when=asyncio.FIRST_COMPLETED)
        if not started.done():
            started.cancel()
            await self._runner  # raises whatever stopped it

    async def stop(self) -> None:
        """Cancel every schedule and hook task and wait for them to end."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._stopping = True
        try:
            runner.cancel()
            await _settle(runner, list(self._tasks.values()))
        finally:
            loose = list(self._loose_tasks)
            for task in loose:
                task.cancel()
            await asyncio.gather(*loose, return_exceptions=True)
            self._tasks.clear()
            self._stopping = False

    async def __aenter__(self) -> MeterPoller:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def poll_now(self, meter_id: str) -> list[MeterReading]:
        """Read one meter once, now (no retries), record health, sink and return the readings.

        Raises the source's :class:`MeterError` on failure.
        """
        source = self._sources[meter_id]
        readings, error = await self._attempt(source)
        if error is not None:
            raise error
        return readings

    # --- internals -------------------------------------------------------------------------------

    def _spawn(self, source: MeterSource) -> None:
        assert self._group is not None
        self._tasks[source.meter_id] = self._group.create_task(
            self._meter_loop(source), name=f"poll:{source.meter_id}"
        )

    async def _meter_loop(self, source: MeterSource) -> None:
        while not self._stopping and source.meter_id in self._sources:
            now = self._wall()
            tick = next_tick(now, source.interval)
            delay = tick - now + jitter_delay(source.interval, self._jitter, self._rng.random())
            await asyncio.sleep(delay)
            await self._poll_with_retries(source)

    async def _poll_with_retries(self, source: MeterSource) -> None:
        attempt = 0
        while True:
            _, error = await self._attempt(source)
            if error is None or not error.transient:
                return
            delay = self._backoff.delay(attempt, self._rng.random())
            logger.info("meter %s: transient failure (%s), retry %d in %.3fs",
                        source.meter_id, error, attempt + 1, delay)
            attempt += 1
            await asyncio.sleep(delay)

    async def _attempt(self, source: MeterSource) -> tuple[list[MeterReading], MeterError | None]:
        meter_id = source.meter_id
        started = self._now()
        try:
            async with self.exclusive(meter_id, source.bus):
                readings = await source.read()
        except MeterError as exc:
            self._fail(meter_id, started, exc)
            return [], exc
        except Exception as exc:  # noqa: BLE001 - a buggy adapter must not stop the other meters
            logger.exception("meter %s: unexpected error from read()", meter_id)
            error = MeterError(f"unexpected {type(exc).__name__}: {exc}", meter_id=meter_id, transient=False)
            self._fail(meter_id, started, error)
            return [], error
        if meter_id not in self._sources:
            return readings, None  # removed while reading
        finished = self._now()
        down_since = self._health.record_success(meter_id, at=finished,
                                                 seconds=max(0.0, (finished - started).total_seconds()))
        for reading in readings:
            await self._sink(reading)
        if down_since is not None:
            logger.info("meter %s answers again after an outage since %s", meter_id, down_since.isoformat())
            if self._on_recovered is not None:
                self._run_hook(meter_id, down_since, finished)
        return readings, None

    def _fail(self, meter_id: str, started: datetime, error: MeterError) -> None:
        if meter_id not in self._sources:
            return
        was_healthy = self._health.is_healthy(meter_id)
        self._health.record_failure(meter_id, at=started, error=error)
        if was_healthy and not self._health.is_healthy(meter_id):
            logger.warning("meter %s is unhealthy: %s", meter_id, error)
        else:
            logger.debug("meter %s failed: %s", meter_id, error)

    def _run_hook(self, meter_id: str, down_since: datetime, now: datetime) -> None:
        assert self._on_recovered is not None
        hook = self._on_recovered

        async def guarded() -> None:
            try:
                await hook(meter_id, down_since, now)
            except Exception:  # noqa: BLE001 - a failed backfill must not stop polling
                logger.exception("meter %s: on_recovered hook failed", meter_id)

        if self._group is not None:
            self._group.create_task(guarded(), name=f"recovered:{meter_id}")
        else:
            # Called through poll_now without a running poller: the caller awaits the hook.
            task = asyncio.create_task(guarded(), name=f"recovered:{meter_id}")
            self._loose_tasks.add(task)
            task.add_done_callback(self._loose_tasks.discard)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._wall(), tz=UTC)


async def _settle(task: asyncio.Task[None], children: list[asyncio.Task[None]]) -> None:
    """Wait for a cancelled task to end, cancelling ``children`` again if a cancel got lost.

    On Python 3.11 ``asyncio.wait_for`` (used inside protocol clients) can swallow a
    cancellation that arrives as its inner future completes; re-cancelling ends the task.
    """
    while not task.done():
        await asyncio.wait({task}, timeout=0.5)
        if not task.done():
            logger.warning("task %s ignored cancellation; cancelling again", task.get_name())
            for child in children:
                child.cancel()
            task.cancel()
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None and not isinstance(exc, asyncio.CancelledError):
        raise exc
