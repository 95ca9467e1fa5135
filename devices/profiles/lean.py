"""DLMS meter profiles without pydantic (issue 15: the concentrator's memory).

The pydantic models (:mod:`devices.profiles.model`, :mod:`devices.profiles.power_quality`,
:class:`devices.adapter_config.PropertyMapping`) stay the one definition of a profile; these classes
restate them on :mod:`broker.lean.base` so that the concentrator reads its profiles without
importing pydantic. tests/edge/test_config_lean.py holds both to the same inputs and values;
:func:`devices.profiles.loader.load_profile` asks the pydantic models for the message when these
refuse a profile.
"""

from __future__ import annotations

import re
from typing import Any

from broker.lean.base import BadValue, Check, Field, Lean, constant, integer, list_of, model, number, optional, text

_OBIS_RE = re.compile(r"^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}$")
_NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9._\-]*$"
_METER_CLASS = constant("ELECTRICITY", "GAS", "WATER", "HEAT")
_PHASE = constant("L1", "L2", "L3")
_KIND = constant("sag", "swell")


def _obis(check: Check) -> Check:
    def inner(value: Any) -> str:
        value = check(value)
        if not _OBIS_RE.match(value):
            raise BadValue(f"Value error, {value!r} is not an OBIS code like 1.0.1.8.1.255")
        return value
    return inner


_OBIS = _obis(text())



def power_quality_rules(spec: Any) -> None:
    """OBIS codes unique over values and counters; profile columns among the values. One definition
    for this class and the pydantic model (devices.profiles.power_quality), whose validator calls it."""
    obis = [v.obis for v in spec.values] + [c.obis for c in spec.counters]
    if len(set(obis)) != len(obis):
        raise ValueError("powerQuality: an OBIS code appears twice")
    if spec.profile is not None:
        unknown = set(spec.profile.columns) - {v.obis for v in spec.values}
        if unknown:
            raise ValueError(f"powerQuality.profile: columns {sorted(unknown)} are not among the values")

class _Spec(Lean):
    forbid_extra = True
    frozen = True


class PropertyMapping(_Spec):
    """How one source value becomes an OMDP PropertyValue (devices.adapter_config.PropertyMapping)."""

    fields = (
        Field("source", text(min_length=1, max_length=128)),
        Field("property_id", text(min_length=1, max_length=128, pattern=r"^[A-Za-z][\w.\-]*$"), alias="propertyId"),
        Field("unit", optional(text(max_length=32)), default=None),
        Field("scale", optional(number(allow_inf_nan=False)), default=None),
        Field("value_type", constant("number", "text"), alias="valueType", default="number"),
        Field("description", optional(text(max_length=256)), default=None),
    )

    def _after(self) -> None:
        if self.scale is not None and self.value_type == "text":
            raise ValueError("scale applies to numbers only, not valueType text")
        if self.scale == 0:
            raise ValueError("scale must not be 0")


class PqValue(_Spec):
    fields = (
        Field("obis", _OBIS),
        Field("quantity", constant("voltage", "current", "powerFactor", "frequency", "thdVoltage", "thdCurrent")),
        Field("phase", optional(_PHASE), default=None),
        Field("unit", text(min_length=1, max_length=16)),
    )

    def _after(self) -> None:
        if (self.quantity == "frequency") != (self.phase is None):
            raise ValueError(f"{self.obis}: frequency has no phase, every other quantity has one")


class PqCounter(_Spec):
    fields = (Field("obis", _OBIS), Field("kind", _KIND), Field("phase", _PHASE))


class PqProfile(_Spec):
    fields = (
        Field("obis", _OBIS),
        Field("period_minutes", integer(ge=1, le=1440), alias="periodMinutes", default=10),
        Field("columns", list_of(text(), min_length=1, max_length=16)),
    )


class PqEvent(_Spec):
    fields = (Field("kind", _KIND), Field("phase", _PHASE))


def _codes(value: Any) -> dict[int, PqEvent]:
    """``dict[int, PqEvent]`` with at least one entry (keys as numbers or numeric text)."""
    if not isinstance(value, dict):
        raise BadValue("Input should be a valid dictionary")
    key_check, item = integer(), model(PqEvent)
    out = {}
    for key, element in value.items():
        try:
            code = key_check(key)
        except BadValue as exc:
            raise BadValue(exc.msg, (key, "[key]")) from None
        try:
            out[code] = item(element)
        except BadValue as exc:
            raise BadValue(exc.msg, (key, *exc.loc)) from None
    if not out:
        raise BadValue("Dictionary should have at least 1 item after validation, not 0")
    return out


class PqEventLog(_Spec):
    fields = (Field("obis", _OBIS), Field("codes", _codes))


class PowerQualitySpec(_Spec):
    """Every power-quality object a meter has (devices.profiles.power_quality.PowerQualitySpec)."""

    fields = (
        Field("values", list_of(model(PqValue), min_length=1)),
        Field("counters", list_of(model(PqCounter)), factory=list),
        Field("profile", optional(model(PqProfile)), default=None),
        Field("event_log", optional(model(PqEventLog)), alias="eventLog", default=None),
    )

    def _after(self) -> None:
        power_quality_rules(self)

    def value(self, obis: str) -> PqValue:
        return next(v for v in self.values if v.obis == obis)

    def code_for(self, kind: str, phase: str) -> int | None:
        if self.event_log is None:
            return None
        return next((code for code, e in self.event_log.codes.items() if e.kind == kind and e.phase == phase), None)


class LoadProfileSpec(_Spec):
    fields = (
        Field("obis", _OBIS),
        Field("period_minutes", integer(ge=1, le=1440), alias="periodMinutes", default=15),
    )


class MeterProfile(_Spec):
    """What to read from one kind of DLMS meter (devices.profiles.model.MeterProfile)."""

    fields = (
        Field("name", text(pattern=_NAME_RE)),
        Field("description", optional(text()), default=None),
        Field("meter_class", _METER_CLASS, alias="meterClass", default="ELECTRICITY"),
        Field("clock_obis", _OBIS, alias="clockObis", default="0.0.1.0.0.255"),
        Field("disconnect_obis", optional(_OBIS), alias="disconnectObis", default=None),
        Field("registers", list_of(model(PropertyMapping), min_length=1)),
        Field("load_profile", optional(model(LoadProfileSpec)), alias="loadProfile", default=None),
        Field("power_quality", optional(model(PowerQualitySpec)), alias="powerQuality", default=None),
    )

    def _after(self) -> None:
        seen: set[str] = set()
        for index, mapping in enumerate(self.registers):
            if not _OBIS_RE.match(mapping.source):
                raise ValueError(f"registers.{index}.source {mapping.source!r} is not an OBIS code like 1.0.1.8.1.255")
            if mapping.source in seen:
                raise ValueError(f"registers: source {mapping.source!r} appears twice")
            seen.add(mapping.source)

    def mapping_for(self, obis: str) -> PropertyMapping | None:
        return next((m for m in self.registers if m.source == obis), None)
