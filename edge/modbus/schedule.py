"""A relay device's weekly schedule in its holding registers (pure): see ``ScheduleBlock``.

One entry per (time, relay, state) with a weekday mask, so a 50-entry tariff schedule is one
write request of 101 registers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from devices.modbus.register_map import ScheduleBlock
from edge.switching import ScheduleError, SwitchPoint

_CLOSED = 1 << 15


def encode_schedule(points: Iterable[SwitchPoint], block: ScheduleBlock) -> list[int]:
    """The block's registers for ``points``: count, then the entries, unused slots zero."""
    grouped: dict[tuple[int, int, bool], int] = {}
    for point in points:
        key = (point.minute, point.index, point.closed)
        grouped[key] = grouped.get(key, 0) | 1 << (point.weekday - 1)
    if len(grouped) > block.slots:
        raise ScheduleError(f"the device holds {block.slots} schedule entries, not {len(grouped)}")
    words = [len(grouped)]
    for (minute, index, closed), mask in sorted(grouped.items()):
        if index > 127:
            raise ScheduleError(f"relay index {index} does not fit the schedule registers")
        words += [(_CLOSED if closed else 0) | index << 8 | mask, minute]
    return words + [0] * (2 * block.slots - (len(words) - 1))


def decode_schedule(words: Sequence[int], block: ScheduleBlock) -> list[SwitchPoint]:
    """The switch points the block's registers hold (ScheduleError for registers no schedule writes)."""
    if len(words) != 1 + 2 * block.slots:
        raise ScheduleError(f"a schedule block is {1 + 2 * block.slots} registers, not {len(words)}")
    count = words[0]
    if count > block.slots:
        raise ScheduleError(f"the schedule says {count} entries in {block.slots} slots")
    points: list[SwitchPoint] = []
    for slot in range(count):
        head, minute = words[1 + 2 * slot], words[2 + 2 * slot]
        mask, index, closed = head & 0x7F, (head >> 8) & 0x7F, bool(head & _CLOSED)
        if not mask or head & 0x80:
            raise ScheduleError(f"schedule entry {slot + 1} has no weekday (or a stray bit): {head:#06x}")
        points += [SwitchPoint(day + 1, minute, index, closed) for day in range(7) if mask & 1 << day]
    return sorted(points)
