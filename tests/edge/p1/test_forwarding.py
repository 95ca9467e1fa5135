"""P1 forwarding without flash wear: interval aggregates (mean, min, max, last, the interval) and
batched writes, counted in outbox transactions (each one fsync: the outbox commits with
synchronous=FULL). bench/p1_outbox.py counts the real fsyncs with strace."""

from __future__ import annotations

import statistics
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.lean import MeterReading, OperationalPropertyRef, PropertyValue
from edge.outbox import Outbox
from edge.p1.aggregate import Aggregator
from edge.p1.forwarding import LiveReadings, P1Forwarding

METER = "p1-agg"
T0 = datetime(2026, 3, 2, 8, 0, 0, tzinfo=UTC)


def reading(n: int, power: float, energy: float, *, meter: str = METER) -> MeterReading:
    at = T0 + timedelta(seconds=n)

    def value(pid: str, number: float, unit: str) -> PropertyValue:
        return PropertyValue(unit=unit, date=at, numericalValue=number,
                             operationalPropertyDefinition=OperationalPropertyRef(propertyId=pid))

    return MeterReading(meterReadingIdentifier=MeterReading.derive_id(meter, at), readingTime=at,
                        propertyValues=[value("OBIS_1.7.0", power, "kW"), value("OBIS_1.8.1", energy, "kWh"),
                                        PropertyValue(date=at, textValue="tariff-2",
                                                      operationalPropertyDefinition=OperationalPropertyRef(
                                                          propertyId="OBIS_96.14.0"))],
                        meterIndividual={"meterIndividualId": meter})


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=20, allow_nan=False), min_size=1, max_size=200),
       st.integers(min_value=0, max_value=899))
def test_an_interval_summary_holds_mean_min_max_and_last(powers: list[float], offset: int) -> None:
    aggregator = Aggregator(period_s=900)
    readings = [reading(offset + n, p, 100 + n) for n, p in enumerate(powers) if offset + n < 900]
    for r in readings:
        assert aggregator.add(r) == []
    [summary] = aggregator.add(reading(900, 1.0, 5000.0))  # the next interval closes this one
    values = {v.property_id: v for v in summary.property_values}
    power, energy = values["OBIS_1.7.0"], values["OBIS_1.8.1"]
    expected = [p for p in powers[:len(readings)]]
    assert power.numerical_value == expected[-1]
    assert power.statistics.min == min(expected) and power.statistics.max == max(expected)
    assert power.statistics.mean == pytest.approx(statistics.fmean(expected))
    assert power.statistics.count == len(expected)
    assert energy.numerical_value == readings[-1].property_values[1].numerical_value  # the register's last value
    assert values["OBIS_96.14.0"].text_value == "tariff-2" and values["OBIS_96.14.0"].statistics is None
    assert summary.interval.start == readings[0].reading_time and summary.interval.end == readings[-1].reading_time
    # Its time and id are those of its last sample: the ledger counts it in its own interval.
    assert summary.reading_time == readings[-1].reading_time
    assert summary.meter_reading_identifier == readings[-1].meter_reading_identifier


def test_meters_are_summarised_apart_and_a_late_telegram_is_dropped() -> None:
    aggregator = Aggregator(period_s=60)
    assert aggregator.add(reading(0, 1, 1)) == [] and aggregator.add(reading(5, 2, 2, meter="gas")) == []
    [closed] = aggregator.add(reading(61, 3, 3))
    assert closed.meter_id == METER and aggregator.add(reading(30, 9, 9)) == []  # older than the open interval
    assert sorted(r.meter_id for r in aggregator.flush()) == ["gas", METER] and aggregator.pending == 0


def run_policy(tmp_path: Path, *, telegrams: int, **policy: object) -> tuple[int, int]:
    """(outbox transactions, readings written) for ``telegrams`` one-second telegrams under ``policy``."""
    outbox = Outbox(tmp_path / f"outbox-{len(list(tmp_path.iterdir()))}.sqlite")
    clock = [0.0]
    transactions = [0]

    def submit(readings: list[MeterReading]) -> None:
        outbox.put_many([(f"concentrator/c/smartMeterMessage/{r.meter_id}/meterReading",
                          r.wire_bytes()) for r in readings])
        transactions[0] += 1

    forwarding = P1Forwarding(submit=submit, live=LiveReadings(), clock=lambda: clock[0], **policy)
    for n in range(telegrams):
        clock[0] = float(n)
        forwarding.add([reading(n, n % 7, 100 + n / 1000)])
    forwarding.flush()
    written = len(outbox)
    outbox.close()
    return transactions[0], written


def test_aggregates_and_batches_cut_the_outbox_transactions(tmp_path: Path) -> None:
    half_hour = 1800
    every = run_policy(tmp_path, telegrams=half_hour, policy="every", batch_s=0)
    batched = run_policy(tmp_path, telegrams=half_hour, policy="every", batch_s=10)
    aggregated = run_policy(tmp_path, telegrams=half_hour, policy="aggregate", aggregate_s=900)
    assert every == (1800, 1800)  # one transaction, one fsync, per telegram: what P1 did before
    assert batched == (180, 1800)  # every telegram still, ten to a transaction
    assert aggregated == (2, 2)  # 08:00-08:15 closed by the first telegram after it, 08:15-08:30 at the end
