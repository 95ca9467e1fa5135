"""One contract, two implementations: the lean messages the concentrator uses (broker/lean) and the
pydantic models the cloud uses (broker/schemas) have the same fields, accept and refuse the same JSON,
and write the same JSON for what they accept.

The documents are generated from the pydantic models' own fields (their annotations and
constraints), not from the lean side, with values of every JSON kind near each constraint's edges
(lengths, bounds, patterns, lax-mode spellings such as ``"5"`` for an int or ``"yes"`` for a bool).
"""

from __future__ import annotations

import json
import math
import types
import typing
import uuid
from datetime import UTC, datetime, timedelta, timezone
from enum import Enum
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import AwareDatetime, BaseModel, SecretStr, ValidationError
from pydantic.fields import FieldInfo

import broker.lean as lean
import broker.schemas as schemas
import broker.lean.firmware as lean_firmware
import broker.lean.light as lean_light
import broker.lean.timesync as lean_timesync
import broker.schemas.firmware as schemas_firmware
import broker.schemas.timesync as schemas_timesync
from broker.lean.base import ContractError, Lean

PAIRS: list[tuple[type[Lean], type[BaseModel]]] = [
    (getattr(lean, name), getattr(schemas, name))
    for name in ["OperationalPropertyRef", "ValueStatistics", "ReadingInterval", "PropertyValue", "PhysicalMeterType",
                 "MeterIndividual", "ClockState", "MeterReading", "MeterReadingBatch", "MeterHealth", "OfflinePeriod",
                 "OutboxState", "LocalIntakeState", "LiveBatchState", "ConcentratorStatus", "Refusal", "DeliveryAck",
                 "CommandError", "GenericCommand", "CommandResponse", "DeviceEvent"]
] + [(getattr(lean_timesync, name), getattr(schemas_timesync, name)) for name in ["TimeRequest", "TimeResponse",
                                                                                  "DriftReport"]] + \
    [(getattr(lean_firmware, name), getattr(schemas_firmware, name)) for name in ["FirmwareManifest", "SignedManifest",
                                                                                  "ChunkRequest"]] + \
    [(lean_light.RelayState, schemas.RelayState), (lean_light.LightStatus, schemas.LightStatus)]
IDS = [pair[0].__name__ for pair in PAIRS]


def _input_names(name: str, info: FieldInfo) -> tuple[str, ...]:
    choices = getattr(info.validation_alias, "choices", None)
    first = tuple(choices) if choices else (info.validation_alias or info.alias or name,)
    return tuple(dict.fromkeys([*first, name]))


@pytest.mark.parametrize("lean_cls, model", PAIRS, ids=IDS)
def test_the_same_fields_wire_names_defaults_and_extra_handling(lean_cls: type[Lean], model: type[BaseModel]) -> None:
    theirs = model.model_fields
    assert [f.name for f in lean_cls.fields] == list(theirs)
    for f in lean_cls.fields:
        info = theirs[f.name]
        assert f.alias == (info.serialization_alias or info.alias or f.name), f.name
        assert f.accepted == _input_names(f.name, info), f.name
        assert f.required == info.is_required(), f.name
        if not f.required and f.factory is None:
            assert f.default == info.default, f.name
        if f.factory is not None:
            assert f.factory() == info.default_factory() or f.name == "command_id", f.name
    assert lean_cls.forbid_extra == (model.model_config.get("extra") == "forbid")
    assert lean_cls.frozen == bool(model.model_config.get("frozen"))


# --- documents generated from the pydantic models -----------------------------------------------

LENGTHS = [0, 1, 2, 31, 32, 33, 63, 64, 65, 127, 128, 129, 999, 1000, 1001, 1023, 1024, 1025]
JUNK = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=False, allow_infinity=False),
                 st.text(max_size=4), st.just([]), st.just({}))
ZONES = st.one_of(st.just(UTC), st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m))))


def _bounded_text() -> st.SearchStrategy[str]:
    specials = st.sampled_from(["m-1", "a/b", "a+b", "a#b", "a\x00b", "a\x1fb", "read_now", "Read", "9x", "ok_1",
                                "", " ", "x" * 64, "€", "\U0001F600", "\ud800"])
    sized = st.sampled_from(LENGTHS).map(lambda n: "x" * n)
    return st.one_of(st.text(max_size=6), specials, sized)


def _datetime_values() -> st.SearchStrategy[object]:
    aware = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=ZONES)
    naive = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1))
    spelled = st.tuples(aware, st.sampled_from(["T", "t", " ", "_"]), st.sampled_from(["iso", "colonless", "z"])).map(
        lambda t: _spell(*t))
    return st.one_of(aware.map(lambda d: d.isoformat()), spelled, naive.map(lambda d: d.isoformat()),
                     st.integers(-10**12, 10**13), st.floats(-1e12, 1e13), st.integers(0, 2 * 10**10).map(str),
                     st.sampled_from(["2026-01-01", "2026-02-30T00:00:00Z", "2026-01-01T24:00:00Z", "2026-1-01T00:00Z",
                                      "2026-01-01T00:00:00+01", "2026-01-01T00:00:00.1234567Z", "now", "",
                                      "2026-01-01T00:00:00+25:00", "1e3", "-5", " 12 "]))


def _spell(moment: datetime, sep: str, zone: str) -> str:
    text = moment.isoformat(sep=sep)
    if zone == "colonless" and text[-3] == ":":
        return text[:-3] + text[-2:]
    if zone == "z" and moment.utcoffset() == timedelta(0):
        return text[:-6] + "z"
    return text


def _int_values(info: list) -> st.SearchStrategy[object]:
    edges = [m.ge for m in info if hasattr(m, "ge")] + [m.le for m in info if hasattr(m, "le")] + \
        [m.gt for m in info if hasattr(m, "gt")]
    near = st.sampled_from(edges or [0]).flatmap(lambda e: st.integers(int(e) - 2, int(e) + 2))
    return st.one_of(near, st.integers(), near.map(float), near.map(str), near.map(lambda n: f" {n}.0 "),
                     st.booleans(), st.sampled_from(["1e3", "0x10", "1_000", "x", 1.5, 1e20]))


def _float_values(info: list) -> st.SearchStrategy[object]:
    return st.one_of(st.floats(), st.integers(-3, 3), st.floats(-5, 5).map(str), st.booleans(),
                     st.sampled_from(["inf", "nan", " 2 ", "1e3", "x", "-0"]))


def _bool_values() -> st.SearchStrategy[object]:
    return st.one_of(st.booleans(), st.integers(-1, 2), st.sampled_from([0.0, 1.0, 0.5]),
                     st.sampled_from(["true", "False", "yes", "no", "on", "off", "t", "f", "y", "n", "1", "0",
                                      " true ", "maybe", ""]))


def _uuid_values() -> st.SearchStrategy[object]:
    return st.one_of(st.uuids().map(str), st.uuids().map(lambda u: u.hex), st.uuids().map(lambda u: str(u).upper()),
                     st.uuids().map(lambda u: f"{{{u}}}"), st.uuids().map(lambda u: f"urn:uuid:{u}"),
                     st.sampled_from(["x", "", "1234"]))


def values_for(annotation: object, metadata: list, depth: int) -> st.SearchStrategy[object]:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return values_for(args[0], [*metadata, *args[1:]], depth)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(values_for(a, metadata, depth) for a in args))
    if annotation is type(None):
        return st.none()
    if origin is typing.Literal:
        return st.one_of(st.sampled_from(list(args)), JUNK)
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return st.one_of(st.sampled_from([m.value for m in annotation]), JUNK)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return st.one_of(documents(annotation, depth + 1), JUNK) if depth < 3 else JUNK
    if origin is list:
        longest = min([m.max_length for m in metadata if hasattr(m, "max_length")] or [3]) + 1
        sizes = st.sampled_from(sorted({0, 1, 2, 3, min(longest, 4)}))
        return st.one_of(sizes.flatmap(lambda n: st.lists(values_for(args[0], [], depth + 1), min_size=n, max_size=n)),
                         JUNK)
    if origin is tuple:
        return st.one_of(st.lists(values_for(args[0], [], depth + 1), min_size=1, max_size=3), JUNK)
    if origin is dict:
        return st.one_of(st.dictionaries(st.text(max_size=3), values_for(args[1], [], depth + 1), max_size=3), JUNK)
    if annotation is typing.Any:
        return st.recursive(JUNK, lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=2),
                                                                                                inner, max_size=2),
                            max_leaves=4)
    if annotation is str:
        return st.one_of(_bounded_text(), JUNK)
    if annotation is bool:
        return _bool_values()
    if annotation is int:
        return _int_values(metadata)
    if annotation is float:
        return _float_values(metadata)
    if annotation is uuid.UUID:
        return st.one_of(_uuid_values(), JUNK)
    if annotation in (datetime, AwareDatetime):
        return _datetime_values()
    if annotation is Path:  # config files (tests/edge/test_config_lean.py)
        return st.one_of(st.sampled_from(["", ".", "var/x.sqlite", "/etc/gridwire/c.pem", "a\x00b"]), JUNK)
    if annotation is SecretStr:
        return st.one_of(_bounded_text(), st.sampled_from(["00" * 16, "0F" * 16, "zz" * 16, "00" * 8]), JUNK)
    raise AssertionError(f"no strategy for {annotation!r}")


def documents(model: type[BaseModel], depth: int = 0) -> st.SearchStrategy[dict]:
    parts = {}
    for name, info in model.model_fields.items():
        names = list(_input_names(name, info))
        key = st.sampled_from(names) if len(names) > 1 else st.just(names[0])
        value = values_for(info.annotation, list(info.metadata), depth)
        # A field is present most of the time, so that whole valid documents come up.
        parts[name] = st.one_of(st.tuples(key, value), st.tuples(key, value), st.tuples(key, value), st.none())
    extra = st.one_of(st.none(), st.tuples(st.sampled_from(["extra", "unknown"]), st.integers(0, 1)))

    def assemble(chosen: dict, more: tuple | None) -> dict:
        document = dict(pair for pair in chosen.values() if pair is not None)
        if more is not None:
            document[more[0]] = more[1]
        return document
    return st.builds(assemble, st.fixed_dictionaries(parts), extra)


def _parsed(raw: bytes) -> object:
    return json.loads(raw)


def same(lean_cls: type[Lean], model: type[BaseModel], raw: bytes) -> None:
    try:
        theirs = model.model_validate_json(raw)
    except ValidationError:
        theirs = None
    try:
        ours = lean_cls.parse(raw)
    except ContractError:
        ours = None
    assert (ours is None) == (theirs is None), (raw, ours, theirs)
    if ours is not None:
        for exclude_none in (True, False):
            want = theirs.model_dump_json(by_alias=True, exclude_none=exclude_none).encode()
            got = ours.dump_json(exclude_none=exclude_none)
            assert _equal(_parsed(got), _parsed(want)), (got, want)


def _equal(a: object, b: object) -> bool:
    """JSON documents equal, NaN equal to NaN (pydantic writes NaN where Python's json does too)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("lean_cls, model", PAIRS, ids=IDS)
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_the_same_documents_are_accepted_and_written_the_same(lean_cls: type[Lean], model: type[BaseModel],
                                                              data: st.DataObject) -> None:
    document = data.draw(documents(model))
    same(lean_cls, model, json.dumps(document, ensure_ascii=False).encode("utf-8", "surrogatepass"))


def _to_pydantic(value: object) -> object:
    """A lean object's content as the pydantic model's keyword arguments."""
    if isinstance(value, Lean):
        return {f.name: _to_pydantic(getattr(value, f.name)) for f in value.fields}
    if isinstance(value, list):
        return [_to_pydantic(v) for v in value]
    return value


@pytest.mark.parametrize("lean_cls, model", PAIRS, ids=IDS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_what_the_concentrator_builds_is_written_as_pydantic_writes_it(lean_cls: type[Lean], model: type[BaseModel],
                                                                       data: st.DataObject) -> None:
    """Built from Python values (aware datetimes in any zone, floats, enums), as the edge builds them."""
    document = data.draw(documents(model))
    try:
        built = lean_cls.parse(json.dumps(document).encode())
    except (ContractError, ValueError):
        return
    # Move every datetime to another zone, as a meter's deviation or P1's local time gives.
    zone = data.draw(ZONES)
    built = _rezoned(built, zone)
    theirs = model.model_validate(_to_pydantic(built))
    for exclude_none in (True, False):
        want = theirs.model_dump_json(by_alias=True, exclude_none=exclude_none).encode()
        assert _equal(_parsed(built.dump_json(exclude_none=exclude_none)), _parsed(want))
        if not _has_tiny_float(_parsed(want)):  # pydantic writes 1e-7 where Python writes 1e-07
            assert built.dump_json(exclude_none=exclude_none) == want


def _rezoned(value: object, zone: timezone) -> object:
    if isinstance(value, Lean):
        return value.replace(**{f.name: _rezoned(getattr(value, f.name), zone) for f in value.fields})
    if isinstance(value, list):
        return [_rezoned(v, zone) for v in value]
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(zone)
    return value


def _has_tiny_float(value: object) -> bool:
    if isinstance(value, float):
        return "e" in repr(value)
    if isinstance(value, dict):
        return any(_has_tiny_float(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_tiny_float(v) for v in value)
    return False


@pytest.mark.parametrize("raw", [b"", b"not json", b"[]", b"null", b'{"meterReadings": []}', b"\xff",
                                 b'\xef\xbb\xbf{"seqs": []}', b'{"seqs": [["1", 2.0]], "refused": []}',
                                 b'{"seqs": [[1, 2, 3]]}', b'{"seqs": [], "refused": [{"seq": 1, "reasonCode": 127,'
                                 b' "reason": "x"}]}', b'{"seqs": [], "x": "\\ud800"}'])
def test_the_same_for_malformed_payloads(raw: bytes) -> None:
    for lean_cls, model in PAIRS:
        same(lean_cls, model, raw)


def test_a_contract_error_names_each_field_and_what_is_wrong() -> None:
    with pytest.raises(ContractError) as caught:
        lean.GenericCommand.parse(b'{"deviceId": "", "name": "Bad", "issuedAt": "2026-01-01T00:00:00"}')
    text = str(caught.value)
    assert text.startswith("3 validation errors for GenericCommand")
    assert "deviceId\n  String should have at least 1 character" in text
    assert "name\n  String should match pattern '^[a-z][a-z0-9_]*$'" in text
    assert "issuedAt\n  Input should have timezone info" in text
    with pytest.raises(ContractError, match="exactly one of numericalValue and textValue"):
        lean.PropertyValue(date=datetime.now(UTC), operational_property={"propertyId": "p"})


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_manifest_signs_the_same_bytes_and_a_chunk_request_reads_the_same(data: st.DataObject) -> None:
    for lean_cls, model, write in [(lean_firmware.FirmwareManifest, schemas_firmware.FirmwareManifest,
                                    lambda m: m.canonical_bytes()),
                                   (lean_firmware.ChunkRequest, schemas_firmware.ChunkRequest, lambda m: m.to_wire())]:
        raw = json.dumps(data.draw(documents(model))).encode()
        try:
            theirs = model.model_validate_json(raw)
        except ValidationError:
            continue
        assert write(lean_cls.parse(raw)) == write(theirs)


def test_the_ids_derive_the_same_on_both_sides() -> None:
    at = datetime(2026, 3, 2, 12, 0, tzinfo=timezone(timedelta(hours=1)))
    assert lean.MeterReading.derive_id("m-1", at) == schemas.MeterReading.derive_id("m-1", at)
    kind = lean.DeviceEventType.TAMPER
    assert lean.DeviceEvent.derive_id("m-1", kind, at, "k") == schemas.DeviceEvent.derive_id("m-1", kind, at, "k")
    assert lean.DeviceEventType is schemas.DeviceEventType and lean.CommandStatus is schemas.CommandStatus
