"""Wave planning: which devices of a campaign go in which wave, grouped by grid topology.

Pure: no I/O. A campaign's devices are grouped by one level of the grid (substation,
transformer or feeder). Wave 0 is a small canary taken from one group; every later wave takes
whole groups, at most ``max_groups_per_wave`` of them, so a bad image can never hit more than
that many parts of the grid at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class GridPosition(Protocol):
    """Where a device hangs in the grid (the registry's ``GridPosition`` has this shape)."""

    @property
    def substation(self) -> str | None: ...
    @property
    def transformer(self) -> str | None: ...
    @property
    def feeder(self) -> str | None: ...


# Not a valid registry identification (parentheses), so it never collides with a real group.
UNASSIGNED = "(unassigned)"


class Grouping(StrEnum):
    """The grid level a campaign's waves are cut along."""

    SUBSTATION = "SUBSTATION"
    TRANSFORMER = "TRANSFORMER"
    FEEDER = "FEEDER"


@dataclass(frozen=True, slots=True)
class PlanTarget:
    """One device to update and where it hangs in the grid."""

    device: str
    group: str
    feeder: str | None = None
    concentrator_id: str | None = None


@dataclass(frozen=True, slots=True)
class PlannedWave:
    """One wave: its position, the groups it touches and its devices."""

    index: int
    groups: tuple[str, ...]
    targets: tuple[PlanTarget, ...]
    canary: bool = False


def group_of(grid: GridPosition | None, grouping: Grouping) -> str:
    """The group key of a device at the chosen level (UNASSIGNED when the registry does not say)."""
    if grid is None:
        return UNASSIGNED
    value = {Grouping.SUBSTATION: grid.substation, Grouping.TRANSFORMER: grid.transformer,
             Grouping.FEEDER: grid.feeder}[grouping]
    return value or UNASSIGNED


def plan_waves(targets: Iterable[PlanTarget], *, max_groups_per_wave: int, canary_size: int) -> list[PlannedWave]:
    """Cut ``targets`` into waves: a canary of at most ``canary_size`` devices from one group,
    then waves of at most ``max_groups_per_wave`` whole groups. Deterministic for a given input."""
    if max_groups_per_wave < 1:
        raise ValueError("max_groups_per_wave must be at least 1")
    if canary_size < 0:
        raise ValueError("canary_size must not be negative")
    by_group: dict[str, list[PlanTarget]] = {}
    seen: set[str] = set()
    for target in targets:
        if target.device in seen:
            raise ValueError(f"device {target.device!r} is listed twice")
        seen.add(target.device)
        by_group.setdefault(target.group, []).append(target)
    groups = sorted(by_group)
    for name in groups:
        by_group[name].sort(key=lambda t: t.device)
    waves: list[PlannedWave] = []
    if canary_size > 0 and groups:
        first = groups[0]
        canary = by_group[first][:canary_size]
        by_group[first] = by_group[first][canary_size:]
        waves.append(PlannedWave(index=0, groups=(first,), targets=tuple(canary), canary=True))
    remaining = [name for name in groups if by_group[name]]
    for start in range(0, len(remaining), max_groups_per_wave):
        chunk = remaining[start:start + max_groups_per_wave]
        members = tuple(t for name in chunk for t in by_group[name])
        waves.append(PlannedWave(index=len(waves), groups=tuple(chunk), targets=members))
    return waves
