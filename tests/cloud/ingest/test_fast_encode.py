"""The ingest fast path writes exactly what the full validator and encoder write, or defers to them."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.schemas import MeterReading, parse_meter_message
from cloud.ingest.fast_encode import encode_batch, encode_payload
from cloud.store.line_protocol import check_reading, encode_reading

METER = "meter-1%s"
CID = "conc 1,\"x\"%d%%"


def slow(payload: bytes, meter: str = METER) -> list[str] | None:
    """The authoritative result: the pydantic models, the store's checks, encode_reading; None if refused."""
    try:
        readings = parse_meter_message(payload)
    except ValueError:
        return None
    if any(r.meter_id != meter or check_reading(r) for r in readings):
        return None
    return [encode_reading(r, concentrator_id=CID) for r in readings]


def value(pid: str = "OBIS_1.8.1", number: object = 12.5, *, unit: object = "kWh", date: str = "2026-01-05T00:15:00+01:00",
          **extra: object) -> dict:
    doc = {"unit": unit, "date": date, "numericalValue": number, "operationalPropertyDefinition": {"propertyId": pid}}
    return {**{k: v for k, v in doc.items() if v is not None}, **extra}


def reading_doc(index: int = 0, *, values: list | None = None, meter: object = METER, **extra: object) -> dict:
    return {"meterReadingIdentifier": str(uuid.uuid5(uuid.NAMESPACE_OID, f"{meter}{index}")),
            "readingTime": "2026-01-05T00:15:00+01:00", "propertyValues": values or [value()],
            "meterIndividual": {"meterIndividualId": meter, "physicalMeterType": {"physicalMeterClass": "GAS"}},
            **extra}


def test_usual_lean_batch_is_encoded_exactly_as_the_full_path() -> None:
    docs = [reading_doc(i, values=[value(f"OBIS_1.8.{k}", 1000 + i + k * 0.1, unit="kWh" if k else "Wh")
                                   for k in range(5)]) for i in range(50)]
    for i, doc in enumerate(docs):  # ids derived from meter and time, as Gridwire's adapters make them
        doc["readingTime"] = f"2026-01-05T00:{i:02d}:00+01:00"
        doc["meterReadingIdentifier"] = str(MeterReading.derive_id(METER, datetime.fromisoformat(doc["readingTime"])))
    payload = json.dumps({"meterReadings": docs}).encode()
    lines = encode_payload(payload, meter=METER, concentrator_id=CID)
    assert lines is not None and lines == slow(payload)
    assert "reading_id" not in lines[0] and "concentrator" not in lines[0]
    assert "OBIS_1.8.0__unit=\"Wh\"" in lines[0] and "OBIS_1.8.1__unit" not in lines[0]


def test_a_live_batch_of_several_meters_is_encoded_exactly_as_the_full_path() -> None:
    """concentrator/{cid}/batch/meterReading: each reading names its own meter; lean and not,
    numbers and text, interleaved meters, each line as the full path writes it for that meter."""
    meters = ["meter-a", "meter-b %s", "meter-c"]
    docs = []
    for i in range(30):
        meter = meters[i % 3]
        values = [value(f"OBIS_1.8.{k}", 1000 + i + k * 0.1) for k in range(1 + i % 4)]
        if i % 7 == 0:
            values.append(value("OBIS_0.2.0", None, unit=None, textValue=f"v{i}"))
        doc = reading_doc(i, values=values, meter=meter)
        doc["readingTime"] = f"2026-01-05T00:{i:02d}:00+01:00"
        if i % 2:  # every other id derived from meter and time: a lean point
            doc["meterReadingIdentifier"] = str(MeterReading.derive_id(meter, datetime.fromisoformat(doc["readingTime"])))
        docs.append(doc)
    encoded = encode_batch(json.dumps({"meterReadings": docs}).encode())
    assert encoded is not None
    assert [meter for meter, _ in encoded] == [meters[i % 3] for i in range(30)]
    assert [line for _, line in encoded] == [slow(json.dumps(doc).encode(), doc["meterIndividual"]["meterIndividualId"])[0]
                                             for doc in docs]
    # Anything unusual in any reading: the full validator decides, reading by reading.
    docs[5]["readingTime"] = "2026-01-05T00:05:00"
    assert encode_batch(json.dumps({"meterReadings": docs}).encode()) is None
    assert encode_batch(b"not json") is None


def test_usual_batch_is_encoded_exactly_as_the_full_path() -> None:
    docs = [reading_doc(i, values=[value(f"OBIS_1.8.{k}", 1000 + i + k * 0.1) for k in range(5)]) for i in range(50)]
    payload = json.dumps({"meterReadings": docs}).encode()
    lines = encode_payload(payload, meter=METER, concentrator_id=CID)
    assert lines is not None and len(lines) == 50
    assert lines == slow(payload)


@pytest.mark.parametrize("doc", [
    reading_doc(meter_reading_identifier=str(uuid.uuid4())),            # python field name (populate_by_name)
    {**reading_doc(), "meterReadingIdentifier": str(uuid.uuid4()).upper()},   # valid, not canonical
    {**reading_doc(), "readingTime": "2026-01-05 00:15:00Z"},           # valid, another spelling
    {**reading_doc(), "sequenceNumber": "7"},                           # lax int
    reading_doc(values=[value(number="1.5")]),                          # lax float
    reading_doc(values=[{**value(), "operationalPropertyDefinition": {"propertyId": "p", "propertyName": "n"}}]),
])
def test_valid_but_unusual_spellings_defer_to_the_full_validator(doc: dict) -> None:
    payload = json.dumps(doc).encode()
    assert slow(payload) is not None
    fast = encode_payload(payload, meter=METER, concentrator_id=CID)
    assert fast is None or fast == slow(payload)


@pytest.mark.parametrize("doc", [
    {**reading_doc(), "readingTime": "2026-01-05T00:15:00"},            # no timezone
    reading_doc(values=[value(), value()]),                              # property twice
    reading_doc(values=[value(number=None)]),                            # neither number nor text
    reading_doc(values=[value(unit="")]),                                # empty unit
    reading_doc(values=[value("reading_id")]),                           # reserved id
    reading_doc(meter="someone-else"),                                   # not the topic's meter
    {**reading_doc(), "meterReadingIdentifier": "x"},
])
def test_invalid_payloads_defer_to_the_full_validator(doc: dict) -> None:
    payload = json.dumps(doc).encode()
    assert slow(payload) is None
    assert encode_payload(payload, meter=METER, concentrator_id=CID) is None


def test_lone_surrogates_are_refused_as_not_json() -> None:
    payload = json.dumps(reading_doc(values=[value(number=None, textValue="\ud800")])).encode()
    with pytest.raises(ValueError, match="not JSON"):
        parse_meter_message(payload)
    assert encode_payload(payload, meter=METER, concentrator_id=CID) is None


# --- generated documents: the fast path never disagrees with the full path --------------------------

def mostly(usual: st.SearchStrategy, odd: st.SearchStrategy) -> st.SearchStrategy:
    """``usual`` eleven times in twelve: whole documents are then often valid, often not."""
    return st.integers(0, 11).flatmap(lambda roll: odd if roll == 0 else usual)


offsets = st.sampled_from([timezone.utc, timezone(timedelta(hours=1)), timezone(timedelta(hours=-5, minutes=-30))])
moments = st.builds(lambda t, tz, us: (datetime(2020, 1, 1, tzinfo=UTC) + timedelta(seconds=t, microseconds=us))
                    .astimezone(tz), st.integers(0, 10**9), offsets, st.sampled_from([0, 0, 500_000, 123_456]))
times = mostly(st.one_of(moments.map(lambda d: d.isoformat()),
                         moments.map(lambda d: d.isoformat().replace("+00:00", "Z"))),
               st.one_of(st.sampled_from(["2026-01-05T00:15:00", "2026-13-05T00:15:00Z", "2026-01-05T00:15:00.1234567Z",
                                          "0001-01-01T00:00:00+01:00", "2026-01-05 00:15:00+00:00", "nonsense", ""]),
                         st.integers(0, 10**9)))
numbers = mostly(st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**53), 2**53),
                 st.sampled_from([float("nan"), float("inf"), 2**60, None, True, "1.5"]) | st.text(max_size=3))
pids = mostly(st.sampled_from(["OBIS_1.8.1", "OBIS_2.8.0", "OBIS_1.7.0", "a b,c=d", "é\"q\"", "p%s%%"]),
              st.sampled_from(["reading_id", "x__unit", "_x", "", "p\\q", "time", "meter"]) | st.text(max_size=6))
units = mostly(st.sampled_from(["kWh", "kW", "m3", 'a "q"', "%", None]),
               st.sampled_from(["", "x" * 33]) | st.text(max_size=40) | st.integers())
refs = mostly(st.fixed_dictionaries({"propertyId": pids}),
              st.fixed_dictionaries({"propertyId": pids}, optional={
                  "propertyDescription": st.one_of(st.none(), st.text(max_size=3)), "propertyName": st.text(max_size=3),
                  "allowedUnits": st.one_of(st.none(), st.lists(st.sampled_from(["kWh", 1]))), "x": st.none()}))


def _value(date: object, ref: dict, unit: object, number: object, text: object, odd: dict) -> dict:
    doc = {"date": date, "operationalPropertyDefinition": ref, **odd}
    if unit is not None:
        doc["unit"] = unit
    if number is not None:
        doc["numericalValue"] = number
    if text is not None:
        doc["textValue"] = text
    return doc


value_docs = st.builds(_value, times, refs, units, numbers,
                       mostly(st.none(), st.text(max_size=5) | st.just("x" * 1025)),
                       mostly(st.just({}), st.sampled_from([{"extra": 1}, {"numerical_value": 1.0}])))
meter_docs = mostly(
    st.fixed_dictionaries({"meterIndividualId": st.just(METER),
                           "physicalMeterType": st.fixed_dictionaries({"physicalMeterClass": st.sampled_from(
                               ["ELECTRICITY", "GAS", "WATER", "HEAT"])})}),
    st.fixed_dictionaries(
        {"meterIndividualId": st.sampled_from([METER, "other", ""])},
        optional={"householdId": st.one_of(st.none(), st.text(max_size=3), st.integers()),
                  "physicalMeterType": st.one_of(st.none(), st.fixed_dictionaries(
                      {}, optional={"physicalMeterClass": st.sampled_from(["ELECTRICITY", "GAS", "water", None]),
                                    "physicalElementIsVirtual": st.sampled_from([True, False, "yes", 1]),
                                    "physicalElementId": st.sampled_from([str(uuid.UUID(int=7)), "x", None])})),
                  "physicalMeter": st.fixed_dictionaries({"physicalMeterClass": st.sampled_from(["HEAT", "gas"])})}))
reading_docs = st.fixed_dictionaries(
    {"meterReadingIdentifier": mostly(st.uuids().map(str), st.sampled_from([str(uuid.UUID(int=2)).upper(), "x", 5])),
     "readingTime": times,
     "propertyValues": mostly(st.lists(value_docs, min_size=1, max_size=4,
                                       unique_by=lambda v: str(v["operationalPropertyDefinition"].get("propertyId"))),
                              st.lists(value_docs, max_size=2)),
     "meterIndividual": meter_docs},
    optional={"sequenceNumber": mostly(st.integers(0, 2**40), st.sampled_from([None, True, "3", 2**70, 1.0])),
              "faultCode": mostly(st.text(max_size=10), st.just("x" * 65) | st.none()),
              "historical": mostly(st.booleans(), st.sampled_from([0, "true"]))})
payload_docs = mostly(reading_docs | st.fixed_dictionaries({"meterReadings": st.lists(reading_docs, min_size=1,
                                                                                       max_size=3)}),
                      st.fixed_dictionaries({"meterReadings": st.lists(reading_docs, max_size=1)},
                                            optional={"other": st.none()}) | st.lists(reading_docs, max_size=2))


def _derive_ids(doc: object) -> object:
    """``doc`` with each reading's id derived from the topic's meter and its time, where it can be:
    the lean layout's usual case."""
    readings = doc.get("meterReadings") if isinstance(doc, dict) else None
    for one in readings if isinstance(readings, list) else [doc]:
        try:
            when = datetime.fromisoformat(one["readingTime"])
            one["meterReadingIdentifier"] = str(MeterReading.derive_id(METER, when))
        except (TypeError, ValueError, KeyError, OverflowError):
            pass
    return doc


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=payload_docs, derived=st.booleans())
def test_fast_path_agrees_with_full_path(doc: object, derived: bool) -> None:
    payload = json.dumps(_derive_ids(doc) if derived else doc).encode()
    fast = encode_payload(payload, meter=METER, concentrator_id=CID)
    if fast is not None:
        assert fast == slow(payload)


# --- a deployment's per-value rule (the catalogue's shape) keeps the fast path -----------------------


def _only_obis_181(reading) -> str | None:
    bad = [v.property_id for v in reading.property_values if v.property_id != "OBIS_1.8.1"]
    return f"unknown operational property {bad[0]!r}" if bad else None


_only_obis_181.value_check = lambda pid, unit, is_text, meter_class: pid == "OBIS_1.8.1"  # type: ignore[attr-defined]


def test_a_check_with_a_value_rule_keeps_the_fast_path_and_its_reasons() -> None:
    from broker.session import Message
    from cloud.ingest.consumer import IngestConsumer

    consumer = IngestConsumer(session=None, batcher=None, dead_letters=None,  # type: ignore[arg-type]
                              checks=(_only_obis_181,))
    topic = f"concentrator/c1/smartMeterMessage/{METER}/meterReading"
    good = json.dumps({"meterReadings": [reading_doc(i) for i in range(3)]}).encode()
    rule = consumer._value_check  # noqa: SLF001
    assert rule is not None
    assert encode_payload(good, meter=METER, concentrator_id="c1", value_check=rule) is not None
    _, lines = consumer._encode(Message(topic=topic, payload=good, qos=1, retain=False))  # noqa: SLF001
    assert len(lines) == 3
    bad = json.dumps(reading_doc(values=[value("OBIS_2.8.0")])).encode()
    assert encode_payload(bad, meter=METER, concentrator_id="c1", value_check=rule) is None
    with pytest.raises(ValueError, match="unknown operational property 'OBIS_2.8.0'"):
        consumer._encode(Message(topic=topic, payload=bad, qos=1, retain=False))  # noqa: SLF001


# --- reading times: the cached day/time/fraction arithmetic equals the schema's ----------------------

any_offsets = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
any_moments = st.builds(lambda base, tz: base.replace(tzinfo=UTC).astimezone(tz),
                        st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(2200, 1, 1)), any_offsets)


@settings(max_examples=400, deadline=None)
@given(moment=any_moments, digits=st.sampled_from([0, 1, 3, 6]), zulu=st.booleans())
def test_reading_times_convert_exactly(moment: datetime, digits: int, zulu: bool) -> None:
    from cloud.ingest.reading_time import to_ns as _ns
    from cloud.store.line_protocol import to_ns

    text = moment.isoformat(timespec="seconds" if digits == 0 else "microseconds")
    if digits not in (0, 6):
        head, tail = text[:20 + digits], text[26:]   # keep the first ``digits`` of the fraction
        text = head + tail
    if zulu and text.endswith("+00:00"):
        text = text[:-6] + "Z"
    assert _ns(text, {}) == to_ns(datetime.fromisoformat(text))


@settings(max_examples=300, deadline=None)
@given(numbers=st.lists(st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(10**6), 10**6).map(float)
                        | st.decimals(-10**6, 10**6, places=4).map(float), min_size=1, max_size=30))
def test_numbers_are_written_as_repr_writes_them(numbers: list[float]) -> None:
    from cloud.ingest.fast_encode import _finish, _Pending

    pending = [_Pending("<", "%s|" * len(numbers), ">", len(numbers))]
    assert _finish(pending, numbers) == ["<" + "".join(f"{n!r}|" for n in numbers) + ">"]
