"""The per-meter health bookkeeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from edge.polling.errors import MeterCommunicationError
from edge.polling.health import HealthTracker

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_unhealthy_after_n_failures_and_recovery_reports_the_outage_start() -> None:
    tracker = HealthTracker(unhealthy_after=2)
    tracker.register("m1", "modbus")
    assert tracker.record_success("m1", at=T0) is None
    tracker.record_failure("m1", at=T0 + timedelta(seconds=10), error=MeterCommunicationError("timeout"))
    assert tracker.snapshot("m1").healthy
    tracker.record_failure("m1", at=T0 + timedelta(seconds=20), error=MeterCommunicationError("refused"))
    health = tracker.snapshot("m1")
    assert (health.healthy, health.consecutive_failures) == (False, 2)
    assert health.last_error == "MeterCommunicationError: refused"
    assert health.last_success == T0
    assert tracker.record_success("m1", at=T0 + timedelta(seconds=30)) == T0 + timedelta(seconds=10)
    assert tracker.snapshot("m1").healthy and tracker.down_since("m1") is None


def test_long_errors_are_cut_and_snapshots_serialise() -> None:
    tracker = HealthTracker()
    tracker.register("m1", "dlms")
    tracker.record_failure("m1", at=T0, error=MeterCommunicationError("x" * 5000))
    health = tracker.snapshot("m1")
    assert len(health.last_error or "") == 300
    assert health.dump()["consecutiveFailures"] == 1
    assert [h.meter_id for h in tracker.all()] == ["m1"]


def test_unhealthy_after_must_be_positive() -> None:
    with pytest.raises(ValueError):
        HealthTracker(unhealthy_after=0)
