"""Gap backfill: after an outage or a restart, read what was missed from the meter's own load profile.

A DLMS meter captures its energy registers every profile period (15 minutes) and keeps
about ten days of them. When a meter answers again after failures (the poller's
``on_recovered``), and for every meter when the concentrator starts, the :class:`Backfiller`
reads the profile from the meter's latest reading on record (the :class:`ReadingLedger`) to
now and submits the rows as historical readings. Reading ids derive from meter and time, so
rows that overlap readings already sent are stored once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from broker.lean import MeterReading
from edge.completeness import ReadingLedger
from edge.polling import MeterError, MeterPoller

if TYPE_CHECKING:
    from edge.config_lean import BackfillSettings

log = logging.getLogger(__name__)


class ProfileSource(Protocol):
    """A meter that can hand out its load profile (the DLMS adapter is one)."""

    async def read_load_profile(self, start: datetime, end: datetime) -> list[MeterReading]: ...


def backfill_window(*, last: datetime | None, now: datetime, period: timedelta,
                    settings: BackfillSettings) -> tuple[datetime, datetime]:
    """The [start, end] range of the load profile to read (pure).

    Starts at the interval holding the latest reading on record (that interval's capture may
    not have been sent yet), or ``initial_hours`` ago for a meter never read; never more than
    ``max_days`` back; ends ``lookahead_hours`` past now, for meter clocks that run ahead.
    """
    now = now.astimezone(UTC)
    earliest = now - timedelta(days=settings.max_days)
    start = last.astimezone(UTC) if last is not None else now - timedelta(hours=settings.initial_hours)
    start = max(start, earliest)
    period_s = period.total_seconds()
    start = datetime.fromtimestamp((start.timestamp() // period_s) * period_s, UTC)
    end = max(now, start) + timedelta(hours=settings.lookahead_hours)
    return start, end


class Backfiller:
    """Reads missed intervals from meters' load profiles and submits them as historical readings."""

    def __init__(self, *, poller: MeterPoller, sources: Mapping[str, ProfileSource],
                 periods: Mapping[str, timedelta], ledger: ReadingLedger,
                 submit: Callable[[list[MeterReading]], None], settings: BackfillSettings,
                 clock: Callable[[], datetime]) -> None:
        self._poller = poller
        self._sources = dict(sources)
        self._periods = dict(periods)
        self._ledger = ledger
        self._submit = submit
        self._settings = settings
        self._clock = clock
        self.runs = 0
        self.readings = 0

    @property
    def meter_ids(self) -> list[str]:
        return sorted(self._sources)

    async def backfill(self, meter_id: str, *, start: datetime | None = None, end: datetime | None = None,
                       since: datetime | None = None) -> int:
        """Read the gap of one meter (or the given range) and submit it; returns the row count.

        Without ``start`` the gap begins at ``since`` (the last reading before an outage), or
        at the latest reading on record. Raises the meter's :class:`MeterError` if the profile
        cannot be read.
        """
        source = self._sources.get(meter_id)
        if source is None:
            raise KeyError(f"meter {meter_id!r} has no load profile to backfill from")
        last = since or self._ledger.last_reading(meter_id)
        window_start, window_end = backfill_window(last=last, now=self._clock(), period=self._periods[meter_id],
                                                   settings=self._settings)
        start, end = start or window_start, end or window_end
        async with self._poller.exclusive(meter_id):
            readings = await source.read_load_profile(start, end)
        if readings:
            self._submit(readings)
        self.runs += 1
        self.readings += len(readings)
        log.info("meter %s: backfilled %d interval(s) from its load profile (%s .. %s)",
                 meter_id, len(readings), start.isoformat(), end.isoformat())
        return len(readings)

    async def on_recovered(self, meter_id: str, down_since: datetime, now: datetime) -> None:
        """The poller's hook: a meter answers again after failing since ``down_since``."""
        if meter_id not in self._sources or not self._settings.enabled:
            return
        log.info("meter %s: back after an outage since %s; backfilling", meter_id, down_since.isoformat())
        # The reading that ended the outage is already on record: start from the one before it.
        since = self._ledger.last_slot_before(meter_id, down_since) or down_since
        await self.backfill(meter_id, since=since)

    async def at_start(self, meter_id: str) -> None:
        """Backfill one meter for the time the concentrator was not running."""
        if not self._settings.enabled:
            return
        try:
            await self.backfill(meter_id)
        except MeterError as exc:
            # The poller will fail on it too, and its recovery runs the backfill then.
            log.warning("meter %s: start-up backfill failed (%s); will retry when it answers", meter_id, exc)
