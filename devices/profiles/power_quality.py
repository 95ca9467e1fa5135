"""A DLMS meter's power-quality objects, as data in its profile (``powerQuality:``).

- ``values``: instantaneous registers (class 3) per phase: voltage, current, power factor, THD,
  and the network frequency (no phase);
- ``counters``: the number of voltage sags and swells per phase (class 1 data or class 3 registers);
- ``profile``: a profile generic (class 7) capturing the clock and some of those values every
  ``periodMinutes``;
- ``eventLog``: the power-quality event log (class 7: clock, event code) and what each code means.

The concentrator reads a meter by it, and the simulator serves the same objects from it.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from devices.profiles.lean import power_quality_rules

Phase = Literal["L1", "L2", "L3"]
Quantity = Literal["voltage", "current", "powerFactor", "frequency", "thdVoltage", "thdCurrent"]
PqEventKind = Literal["sag", "swell"]
_OBIS_RE = re.compile(r"^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}$")


def _obis(value: str) -> str:
    if not _OBIS_RE.match(value):
        raise ValueError(f"{value!r} is not an OBIS code like 1.0.32.7.0.255")
    return value


class _Spec(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)


class PqValue(_Spec):
    """One instantaneous value: what it measures, on which phase, in which unit."""

    obis: str
    quantity: Quantity
    phase: Phase | None = None
    unit: str = Field(min_length=1, max_length=16)

    _check = field_validator("obis")(classmethod(lambda cls, v: _obis(v)))

    @model_validator(mode="after")
    def _phase(self) -> PqValue:
        if (self.quantity == "frequency") != (self.phase is None):
            raise ValueError(f"{self.obis}: frequency has no phase, every other quantity has one")
        return self


class PqCounter(_Spec):
    """How many sags or swells a phase has seen."""

    obis: str
    kind: PqEventKind
    phase: Phase

    _check = field_validator("obis")(classmethod(lambda cls, v: _obis(v)))


class PqProfile(_Spec):
    """The power-quality profile: clock plus ``columns`` (value OBIS codes) every ``periodMinutes``."""

    obis: str
    period_minutes: int = Field(default=10, alias="periodMinutes", ge=1, le=1440)
    columns: list[str] = Field(min_length=1, max_length=16)

    _check = field_validator("obis")(classmethod(lambda cls, v: _obis(v)))


class PqEvent(_Spec):
    kind: PqEventKind
    phase: Phase


class PqEventLog(_Spec):
    obis: str
    codes: dict[int, PqEvent] = Field(min_length=1)

    _check = field_validator("obis")(classmethod(lambda cls, v: _obis(v)))


class PowerQualitySpec(_Spec):
    """Every power-quality object a meter has."""

    values: list[PqValue] = Field(min_length=1)
    counters: list[PqCounter] = Field(default_factory=list)
    profile: PqProfile | None = None
    event_log: PqEventLog | None = Field(default=None, alias="eventLog")

    @model_validator(mode="after")
    def _consistent(self) -> PowerQualitySpec:
        power_quality_rules(self)
        return self

    def value(self, obis: str) -> PqValue:
        return next(v for v in self.values if v.obis == obis)

    def code_for(self, kind: PqEventKind, phase: Phase) -> int | None:
        if self.event_log is None:
            return None
        return next((code for code, e in self.event_log.codes.items() if e.kind == kind and e.phase == phase), None)
