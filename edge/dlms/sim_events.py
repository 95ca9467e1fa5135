"""Scripted occasions for ``gridwire sim dlms --event``: what a simulated meter does, and when.

A spec is ``SECONDS:KIND`` or ``alarm:BIT`` after the seconds (``30:power-failure``,
``45:power-restored``, ``60:cover-open``, ``75:alarm:REPLACE_BATTERY`` or ``75:alarm:3``,
``90:disconnect``, ``120:reconnect``), counted from the meter's start. Each is carried out once,
in time order; what it pushes goes to the meter's push destination (``--push-to``, or whatever a
client wrote to the push setup's attribute 3).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from edge.dlms.alarms import ALARM_BITS, alarm_bit
from edge.dlms.simulator import DlmsMeterSimulator

logger = logging.getLogger(__name__)

KINDS = ("power-failure", "power-restored", "cover-open", "alarm", "disconnect", "reconnect")


@dataclass(frozen=True, slots=True)
class SimEvent:
    """One scripted occasion: ``kind`` (with an alarm's ``bit``) ``after`` seconds."""

    after: float
    kind: str
    bit: int | None = None


def parse_event(spec: str) -> SimEvent:
    """``SECONDS:KIND[:BIT]`` as a SimEvent; ValueError naming what is wrong."""
    seconds, _, rest = spec.partition(":")
    kind, _, bit_text = rest.partition(":")
    try:
        after = float(seconds)
    except ValueError:
        raise ValueError(f"event {spec!r}: write SECONDS:KIND, e.g. 30:power-failure") from None
    if not after >= 0:
        raise ValueError(f"event {spec!r}: the seconds must be 0 or more")
    if kind not in KINDS:
        raise ValueError(f"event {spec!r}: the kind is one of {', '.join(KINDS)}")
    if kind != "alarm":
        if bit_text:
            raise ValueError(f"event {spec!r}: only an alarm takes a bit")
        return SimEvent(after, kind)
    if not bit_text:
        raise ValueError(f"event {spec!r}: an alarm needs its bit, e.g. 30:alarm:REPLACE_BATTERY or 30:alarm:0")
    if bit_text.isdigit():
        bit = int(bit_text)
        if bit > 31:
            raise ValueError(f"event {spec!r}: the alarm register has bits 0..31")
    else:
        try:
            bit = alarm_bit(bit_text)
        except KeyError:
            names = ", ".join(name for b, name in sorted(ALARM_BITS.items()) if b < 32)
            raise ValueError(f"event {spec!r}: unknown alarm {bit_text!r}; one of {names}") from None
    return SimEvent(after, kind, bit)


async def carry_out(simulator: DlmsMeterSimulator, event: SimEvent) -> None:
    """Make the meter do ``event`` now."""
    logger.info("meter %s: %s%s", simulator.name, event.kind, f" (bit {event.bit})" if event.bit is not None else "")
    if event.kind == "power-failure":
        await simulator.pull_power()
    elif event.kind == "power-restored":
        await simulator.restore_power()
    elif event.kind == "cover-open":
        await simulator.pusher.open_cover()
    elif event.kind == "alarm":
        assert event.bit is not None
        await simulator.pusher.raise_alarm(event.bit)
    elif event.kind == "disconnect":
        simulator.model.disconnect()  # the disconnector's change is pushed by the model's hook
    else:
        simulator.model.reconnect()


async def run_events(simulator: DlmsMeterSimulator, events: list[SimEvent], stop: asyncio.Event) -> None:
    """Carry out ``events`` at their times from now, until done or ``stop``."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for event in sorted(events, key=lambda e: e.after):
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=max(0.0, start + event.after - loop.time()))
        if stop.is_set():
            return
        await carry_out(simulator, event)
