"""The alarm register and standard event log: named decoding, the model, and reads from the simulator."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.dlms import DlmsMeterAdapter, DlmsMeterConfig, DlmsMeterSimulator, MeterModel
from edge.dlms.alarms import ALARM_BITS, alarm_bit, decode_alarms, decode_events
from tests.edge.dlms.conftest import ManualClock


@given(st.sets(st.integers(min_value=0, max_value=31)))
def test_decode_alarms_names_exactly_the_set_bits(bits: set[int]) -> None:
    decoded = decode_alarms(sum(1 << bit for bit in bits))
    assert [d["bit"] for d in decoded] == sorted(bits)
    assert all(d["name"] == ALARM_BITS.get(d["bit"], f"BIT_{d['bit']}") for d in decoded)


def test_decode_alarms_refuses_values_outside_uint32() -> None:
    with pytest.raises(ValueError):
        decode_alarms(1 << 32)
    assert alarm_bit("FRAUD_ATTEMPT") == 13 and decode_alarms(0) == []


def test_decode_events_orders_by_time_and_names_codes() -> None:
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    decoded = decode_events([(t0 + timedelta(hours=1), 2), (t0, 1), (t0 + timedelta(hours=2), 200)])
    assert [(e["code"], e["name"]) for e in decoded] == [(1, "POWER_FAILURE"), (2, "POWER_RETURNED"),
                                                         (200, "EVENT_200")]
    assert decoded[0]["time"] == t0.isoformat()


def test_model_alarm_bits_and_event_rows(model: MeterModel, clock: ManualClock) -> None:
    model.raise_alarm(alarm_bit("POWER_UP"))
    model.raise_alarm(alarm_bit("REPLACE_BATTERY"))
    assert model.alarm_bits == 0b110
    with pytest.raises(ValueError):
        model.raise_alarm(32)
    model.log_event(2)
    model.log_event(1, clock.now - timedelta(minutes=5))
    assert [code for _, code in model.event_rows()] == [1, 2]
    assert model.event_rows(start=clock.now - timedelta(minutes=1)) == [(clock.now, 2)]


async def test_simulator_serves_alarm_register_and_event_log(lls_meter: DlmsMeterSimulator, model: MeterModel,
                                                             clock: ManualClock,
                                                             config_for: Callable[..., DlmsMeterConfig]) -> None:
    adapter = DlmsMeterAdapter(config=config_for(lls_meter))
    assert await adapter.read_alarm_register() == 0
    assert await adapter.read_event_log() == []
    model.raise_alarm(alarm_bit("FRAUD_ATTEMPT"))
    model.raise_alarm(31)
    model.log_event(1, clock.now - timedelta(hours=3))
    model.log_event(2, clock.now - timedelta(hours=2, minutes=59))
    async with adapter.session():
        assert await adapter.read_alarm_register() == (1 << 13) | (1 << 31)
        events = await adapter.read_event_log()
    assert events == [(clock.now - timedelta(hours=3), 1), (clock.now - timedelta(hours=2, minutes=59), 2)]
