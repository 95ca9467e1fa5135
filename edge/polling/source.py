"""The small interface the poller reads meters through, whatever protocol they speak."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from broker.lean import MeterReading


@runtime_checkable
class MeterSource(Protocol):
    """One meter the poller reads on a schedule.

    ``interval`` is in seconds. ``bus`` names the shared medium (a serial port, a TCP gateway):
    the poller bounds how many reads run at once per bus. ``read`` raises a
    :class:`edge.polling.errors.MeterError` subclass on failure. A source may also carry a
    ``protocol`` string (``"modbus"``, ``"dlms"``) that ends up in its health record.
    """

    @property
    def meter_id(self) -> str: ...

    @property
    def bus(self) -> str: ...

    @property
    def interval(self) -> float: ...

    async def read(self) -> list[MeterReading]: ...
