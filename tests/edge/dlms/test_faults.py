"""A hung or unreachable meter gives a transient DlmsCommunicationError; it recovers when back."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from edge.dlms import DlmsCommunicationError, DlmsMeterAdapter, DlmsMeterConfig, DlmsMeterSimulator
from edge.polling.errors import MeterCommunicationError
from tests.edge.dlms.conftest import ManualClock


async def test_unresponsive_meter_times_out(lls_meter: DlmsMeterSimulator,
                                            config_for: Callable[..., DlmsMeterConfig]) -> None:
    lls_meter.unresponsive = True
    adapter = DlmsMeterAdapter(config=config_for(lls_meter, timeout_s=0.3))
    with pytest.raises(DlmsCommunicationError) as caught:
        await adapter.read_registers()
    assert caught.value.transient is True
    assert isinstance(caught.value, MeterCommunicationError)
    assert "meter-0042" in str(caught.value)
    lls_meter.unresponsive = False
    assert (await adapter.read_registers()).property_values


async def test_down_window_refuses_then_recovers(lls_meter: DlmsMeterSimulator, clock: ManualClock,
                                                 config_for: Callable[..., DlmsMeterConfig]) -> None:
    lls_meter.add_down_window(clock.now + timedelta(minutes=10), clock.now + timedelta(hours=1))
    adapter = DlmsMeterAdapter(config=config_for(lls_meter))
    await adapter.read_clock()
    clock.advance(timedelta(minutes=30))
    with pytest.raises(DlmsCommunicationError):
        await adapter.read_clock()
    assert lls_meter.connections_refused == 1
    clock.advance(timedelta(minutes=31))
    # The meter kept capturing while it was unreachable: the gap is backfillable.
    readings = await adapter.read_load_profile(clock.now - timedelta(hours=1), clock.now)
    assert len(readings) == 4


async def test_connection_refused_is_transient(config_for: Callable[..., DlmsMeterConfig],
                                               lls_meter: DlmsMeterSimulator) -> None:
    config = config_for(lls_meter)
    await lls_meter.stop()
    with pytest.raises(DlmsCommunicationError) as caught:
        await DlmsMeterAdapter(config=config).read_clock()
    assert caught.value.transient is True
