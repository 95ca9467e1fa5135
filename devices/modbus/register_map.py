"""Modbus register maps as data: pydantic models and the YAML loader.

A map says, for one kind of device, where each value lives (address, register type), how it
is encoded (data type, word order, scale), what it means in OMDP terms (operational property
id and unit) and whether it may be written. Maps ship in ``devices/modbus/maps/*.yaml``.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from broker.errors import Invalid
from devices.modbus.data_types import DataType, WordOrder, int_range, is_float, register_count

MAPS_DIR = Path(__file__).parent / "maps"


class RegisterType(StrEnum):
    HOLDING = "holding"
    INPUT = "input"
    COIL = "coil"
    DISCRETE = "discrete"

    @property
    def is_bit(self) -> bool:
        return self in (RegisterType.COIL, RegisterType.DISCRETE)


class RegisterMapError(Invalid):
    """A register map file that cannot be loaded; the message names the file and the point."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class Simulation(_Model):
    """How the simulator makes a point's value move (engineering units, per second)."""

    kind: Literal["constant", "counter", "wave", "mirror"] = "constant"
    value: float = 0.0
    rate: float = 0.0
    amplitude: float = 0.0
    period: float = Field(default=60.0, gt=0)
    of: str | None = None  # mirror: the point whose value this one shows


class Point(_Model):
    """One value of a device."""

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$", max_length=64)
    address: int = Field(ge=0, le=65535)
    register_type: RegisterType = Field(alias="register")
    type: DataType
    word_order: WordOrder = Field(default=WordOrder.BIG, alias="wordOrder")
    scale: float = 1.0
    scale_power: int | None = Field(default=None, alias="scalePower", ge=-12, le=12)
    unit: str | None = Field(default=None, max_length=32)
    property_id: str = Field(alias="property", min_length=1, max_length=128)
    description: str | None = None
    writable: bool = False
    minimum: float | None = None
    maximum: float | None = None
    states: dict[int, str] | None = None  # integer codes published as text (status words)
    sim: Simulation = Simulation()

    @model_validator(mode="after")
    def _consistent(self) -> Point:
        if self.register_type.is_bit != (self.type is DataType.BOOL):
            raise ValueError(f"a {self.register_type.value} point must be {'bool' if self.register_type.is_bit else 'a register type, not bool'}")
        if self.writable and self.register_type not in (RegisterType.HOLDING, RegisterType.COIL):
            raise ValueError(f"{self.register_type.value} registers cannot be written; only holding and coil")
        if self.scale == 0:
            raise ValueError("scale must not be 0")
        if self.scale_power is not None and self.scale != 1.0:
            raise ValueError("give scale or scalePower, not both")
        if self.states is not None and (self.type is DataType.BOOL or is_float(self.type)):
            raise ValueError("states need an integer data type")
        if self.address + self.register_count - 1 > 65535:
            raise ValueError("point runs past address 65535")
        return self

    @property
    def multiplier(self) -> float:
        return 10.0**self.scale_power if self.scale_power is not None else self.scale

    @property
    def register_count(self) -> int:
        return register_count(self.type)

    @property
    def end(self) -> int:
        """One past the last address (register or bit) the point occupies."""
        return self.address + self.register_count

    def write_range(self) -> tuple[float, float] | None:
        """The engineering range a write must fall in, from the data type and min/max."""
        if self.type is DataType.BOOL or is_float(self.type):
            low, high = float("-inf"), float("inf")
        else:
            raw_low, raw_high = int_range(self.type)
            low, high = sorted((raw_low * self.multiplier, raw_high * self.multiplier))
        if self.minimum is not None:
            low = max(low, self.minimum)
        if self.maximum is not None:
            high = min(high, self.maximum)
        return (low, high) if self.type is not DataType.BOOL else None


class ScheduleBlock(_Model):
    """Holding registers where the device keeps a weekly switching schedule of its relays.

    ``address`` holds the number of entries in use, then each of ``slots`` entries takes two
    registers: (closed << 15) | (relay index << 8) | weekday mask (bit 0 Monday .. bit 6 Sunday),
    and the minute of the day (device local time). The device switches on its own at those times.
    """

    address: int = Field(ge=0, le=65535)
    slots: int = Field(ge=1, le=60)  # 1 + 2 * 60 registers fit one write request (at most 123)

    @property
    def end(self) -> int:
        return self.address + 1 + 2 * self.slots


class RegisterMap(_Model):
    """All points of one kind of device."""

    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    meter_class: Literal["ELECTRICITY", "GAS", "WATER", "HEAT"] | None = Field(default=None, alias="meterClass")
    # Addresses a read may span without a point: 0 unless the device answers for the gaps.
    max_gap: int = Field(default=0, alias="maxGap", ge=0, le=100)
    points: list[Point] = Field(min_length=1)
    schedule: ScheduleBlock | None = None

    @model_validator(mode="after")
    def _unique_and_disjoint(self) -> RegisterMap:
        if self.schedule is not None:
            block = self.schedule
            if block.end > 65536:
                raise ValueError(f"the schedule block ({block.address}..{block.end - 1}) runs past register 65535")
            for point in self.by_register(RegisterType.HOLDING):
                if point.address < block.end and block.address < point.end:
                    raise ValueError(f"point {point.name!r} overlaps the schedule block "
                                     f"({block.address}..{block.end - 1})")
        seen: dict[str, Point] = {}
        for point in self.points:
            if point.name in seen:
                raise ValueError(f"point {point.name!r} is defined twice")
            seen[point.name] = point
        for register in RegisterType:
            ordered = sorted((p for p in self.points if p.register_type is register), key=lambda p: p.address)
            for before, after in zip(ordered, ordered[1:], strict=False):
                if after.address < before.end:
                    raise ValueError(
                        f"point {after.name!r} ({register.value} {after.address}) overlaps "
                        f"point {before.name!r} ({before.address}..{before.end - 1})"
                    )
        for point in self.points:
            if point.sim.kind == "mirror" and point.sim.of not in seen:
                raise ValueError(f"point {point.name!r} mirrors unknown point {point.sim.of!r}")
        return self

    def point(self, name: str) -> Point:
        for point in self.points:
            if point.name == name:
                return point
        raise KeyError(name)

    def by_register(self, register: RegisterType) -> list[Point]:
        return sorted((p for p in self.points if p.register_type is register), key=lambda p: p.address)


def available_maps() -> list[str]:
    """Names of the maps shipped with Gridwire."""
    return sorted(path.stem for path in MAPS_DIR.glob("*.yaml"))


def map_path(name_or_path: str | Path) -> Path:
    """The file a map name (``solar-inverter``) or a path refers to."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.parent != Path("."):
        return candidate
    return MAPS_DIR / f"{name_or_path}.yaml"


def load_map(name_or_path: str | Path) -> RegisterMap:
    """Load and validate a register map; RegisterMapError names the file and point at fault."""
    path = map_path(name_or_path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RegisterMapError(f"{path}: cannot read register map: {exc}") from exc
    except yaml.YAMLError as exc:
        raise RegisterMapError(f"{path}: not valid YAML: {exc}") from exc
    return parse_map(document, source=str(path))


def parse_map(document: object, *, source: str = "<register map>") -> RegisterMap:
    """Validate an already parsed map document (see :func:`load_map`)."""
    if not isinstance(document, dict):
        raise RegisterMapError(f"{source}: a register map must be a mapping")
    try:
        return RegisterMap.model_validate(document)
    except ValidationError as exc:
        raise RegisterMapError(_describe(exc, document, source)) from exc


def _describe(exc: ValidationError, document: dict, source: str) -> str:
    points = document.get("points") if isinstance(document.get("points"), list) else []
    lines = []
    for error in exc.errors():
        loc = list(error["loc"])
        where = "map"
        if len(loc) >= 2 and loc[0] == "points" and isinstance(loc[1], int):
            index = loc[1]
            raw = points[index] if index < len(points) else None
            name = raw.get("name") if isinstance(raw, dict) else None
            where = f"point {name!r} (#{index + 1})" if name else f"point #{index + 1}"
            loc = loc[2:]
        field = ".".join(str(part) for part in loc)
        lines.append(f"{where}{' ' + field if field else ''}: {error['msg']}")
    return f"{source}: invalid register map: " + "; ".join(lines)
