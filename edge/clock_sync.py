"""Keeps the DLMS meters' clocks right: the concentrator learns the cloud's time (NTP-style
exchange over MQTT), reads each meter's clock, sets it when its drift passes a threshold, and
reports every measurement to the cloud, where drift is recorded per meter."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta

from broker.session import MqttError, MqttSession
from edge.dlms import DlmsMeterAdapter
from edge.polling.errors import MeterError
from edge.timesync import TimeSyncClient, check_meter, publish_drift

log = logging.getLogger(__name__)


class _MeterClock:
    """A DLMS adapter seen as the clock ``check_meter`` reads and sets."""

    def __init__(self, adapter: DlmsMeterAdapter) -> None:
        self._adapter = adapter

    async def read_clock(self) -> datetime:
        moment, _status = await self._adapter.read_clock()
        return moment

    async def set_clock(self, value: datetime) -> None:
        await self._adapter.set_clock(value)


async def keep_meter_clocks(stop: asyncio.Event, *, session: MqttSession, concentrator_id: str,
                            meters: Mapping[str, DlmsMeterAdapter],
                            exclusive: Callable[[str], AbstractAsyncContextManager[None]],
                            interval: float, threshold: timedelta,
                            on_sync: Callable[[float], None] | None = None) -> None:
    """Every ``interval`` seconds until ``stop``: one time exchange (``on_sync`` gets the offset
    estimate after each that succeeds), then each meter checked under its exclusive lock (a DLMS
    association is exclusive). A meter that does not answer is skipped until the next round; the
    poller already counts its health. Waits for the broker first (a concentrator that booted
    offline has no reference time to set meters by)."""
    client = TimeSyncClient(session=session, concentrator_id=concentrator_id)
    await client.start()
    while not stop.is_set():
        try:
            await client.exchange()
        except TimeoutError:
            log.warning("no answer from the cloud's time service; using the last estimate")
        else:
            estimate = client.filter.estimate
            if on_sync is not None and estimate is not None:
                on_sync(estimate.offset)
        for meter_id, adapter in (meters if client.filter.estimate is not None else {}).items():
            try:
                async with exclusive(meter_id):
                    report = await check_meter(meter_id, _MeterClock(adapter), reference=client.reference_now,
                                               threshold=threshold)
                await publish_drift(session, concentrator_id, report)
            except MeterError as exc:
                log.warning("meter %s: clock not checked: %s", meter_id, exc)
            except MqttError:
                return  # session closing
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval)
        except TimeoutError:
            pass
