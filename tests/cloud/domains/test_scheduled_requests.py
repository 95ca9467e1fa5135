"""A functional request the scheduler publishes counts its TTL from the run, not from when
the schedule was stored, and one run is one request however often it is delivered."""

from datetime import UTC, datetime, timedelta

from broker.session import Message
from cloud.domains.consumer import _from_schedule
from cloud.domains.schemas import FunctionalRequest

STORED = FunctionalRequest.model_validate({
    "deviceId": "light-1", "operation": "setLight", "parameters": {"on": True, "dimLevel": 70},
    "ttlSeconds": 900, "issuedAt": "2026-01-01T10:00:00+00:00"})


def scheduled(due: datetime, schedule: int = 7) -> Message:
    return Message(topic="domain/publiclighting/request/org-a", payload=STORED.model_dump_json(by_alias=True).encode(),
                   qos=1, retain=False, user_properties={
                       "scheduledFor": due.isoformat(), "idempotencyKey": f"schedule:{schedule}:{due.isoformat()}"})


def test_a_run_is_issued_at_its_due_time_with_a_correlation_id_of_its_own():
    due = datetime(2026, 3, 2, 17, 45, tzinfo=UTC)
    first = _from_schedule(STORED, scheduled(due))
    again = _from_schedule(STORED, scheduled(due))
    next_day = _from_schedule(STORED, scheduled(due + timedelta(days=1)))
    assert first.issued_at == due
    assert first.correlation_id == again.correlation_id != next_day.correlation_id
    assert first.parameters == STORED.parameters


def test_a_request_from_an_application_is_left_as_it_is():
    message = Message(topic="domain/publiclighting/request/org-a", payload=b"", qos=1, retain=False)
    assert _from_schedule(STORED, message) is STORED
