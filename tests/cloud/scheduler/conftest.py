"""A hand-moved clock and cloud MQTT sessions for the scheduler tests."""

from __future__ import annotations

from tests.fixtures.clock import ManualClock

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta

import pytest

from broker.session import MqttSession
from tests.fixtures.mosquitto import MosquittoServer




@pytest.fixture
async def cloud_session(shared_mosquitto: MosquittoServer) -> AsyncIterator[Callable[[str], MqttSession]]:
    """A factory of connected cloud sessions, all closed after the test."""
    sessions: list[MqttSession] = []

    def make(name: str) -> MqttSession:
        session = MqttSession(client_id=f"{name}-{uuid.uuid4().hex[:8]}", host=shared_mosquitto.host,
                              port=shared_mosquitto.port, clean_start=True, session_expiry=0,
                              **shared_mosquitto.credentials("gridwire-cloud"))
        sessions.append(session)
        return session

    yield make
    for session in sessions:
        await session.close()
