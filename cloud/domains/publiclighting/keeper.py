"""Keeps each light's own schedule on the light: watches the lights' statuses and sends a light
the schedule it should hold when it connects holding another (or none).

Subscribes ``device/+/status`` in the shared group ``device-schedules`` (one consumer of the
group sees each status; shared subscriptions get no retained messages, so only what lights
publish while it listens). Each status is a :class:`~broker.schemas.LightStatus`; the version
it holds is recorded and the decision is :meth:`DeviceScheduleStore.report`'s. The re-send is an
ordinary ``setDeviceSchedule`` functional request of the organisation that set the schedule
(given as ``resend``: authorised again, recorded, with its own result and notification).
"""

from __future__ import annotations

import logging

from pydantic import ValidationError

from broker import topics
from broker.errors import Forbidden, Invalid, NotFound
from broker.schemas import LightStatus
from broker.session import Message, MqttSession
from cloud.domains.device_schedules import DeviceScheduleStore, Resend

log = logging.getLogger(__name__)

SHARE_GROUP = "device-schedules"


class LightScheduleKeeper:
    """Sends lights that come back without their schedule the one they should hold."""

    def __init__(self, *, session: MqttSession, store: DeviceScheduleStore, resend: Resend) -> None:
        self._session = session
        self.store = store
        self._resend = resend
        # The version each light last reported, as recorded: a status after a switch that reports
        # it again needs no database (a fleet switching at dusk sends one per light).
        self._recorded: dict[str, int | None] = {}
        self.resent = 0

    async def start(self, *, group: str = SHARE_GROUP) -> None:
        await self._session.subscribe(topics.shared(group, topics.ALL_DEVICE_STATUS), self.handle)

    async def handle(self, message: Message) -> None:
        """One light status; bad input is logged and dropped (a status is superseded by the next)."""
        if not message.payload:
            return  # a cleared retained status
        try:
            device = topics.parse(message.topic).device
            status = LightStatus.model_validate_json(message.payload)
            if status.device_id != device:
                raise ValueError(f"status of {status.device_id!r} on the topic of {device!r}")
        except (topics.TopicError, ValidationError, ValueError) as exc:
            log.warning("bad light status on %s: %s; payload %r", message.topic, exc, message.payload[:200])
            return
        version = status.schedule_version
        if not status.birth and (version is None or self._recorded.get(device) == version):
            return  # only a birth sends again; a light keeping no schedule has nothing to record
        due = await self.store.report(device, version=status.schedule_version, birth=status.birth, at=status.at)
        self._recorded[device] = status.schedule_version
        if due is None:
            return
        try:
            correlation = await self._resend(due)
        except (Forbidden, Invalid, NotFound) as exc:  # the organisation lost the right, the device is gone, ...
            log.warning("schedule version %d of %s not sent again for %s: %s", due.version, device, due.organisation,
                        exc)
            return
        await self.store.sent(device, version=due.version, correlation=correlation)
        self.resent += 1
        log.info("schedule version %d sent again to %s (request %s)", due.version, device, correlation)
