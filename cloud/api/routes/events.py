"""Device events: their history (paged, filtered by device, type and time) and each
organisation's subscriptions (which event types, on its app topic and/or its webhook).

Who sees what is the registry's answer, through :func:`cloud.registry.functions.authorise`:
RECEIVE_EVENTS on the device (MONITORING or OWNER). A platform administrator reads every
device's history.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from broker.errors import Invalid, NotFound
from cloud.api.deps import MAX_OFFSET, Caller, QueryDatetime, RegistryDep, require
from cloud.events import EventStore
from cloud.monitoring.events import EventType, MonitoringEvent
from cloud.registry import DeviceFunction, PlatformRole

router = APIRouter(prefix="/v1/events", tags=["events"])


class EventPage(BaseModel):
    """One page of events, newest first."""

    model_config = ConfigDict(populate_by_name=True)

    events: list[MonitoringEvent]
    page: int
    page_size: int = Field(alias="pageSize")
    total: int


class SubscriptionChannels(BaseModel):
    """Where an organisation wants one event type delivered."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    # Strict: a flag is true or false, not 0, 1 or "yes".
    mqtt: StrictBool = Field(default=True, description="publish on app/{org}/monitoring/{eventType}")
    webhook: StrictBool = Field(default=False, description="POST to the organisation's webhook (signed, at least once)")


class SubscriptionPublic(SubscriptionChannels):
    organisation: str
    event_type: EventType = Field(alias="eventType")


def _store(registry: RegistryDep) -> EventStore:
    return EventStore(registry.engine)


@router.get("", response_model=EventPage, response_model_by_alias=True)
async def event_history(registry: RegistryDep, who: Caller,
                        device_id: Annotated[str | None, Query(alias="deviceId", min_length=1)] = None,
                        event_type: Annotated[list[EventType] | None, Query(alias="eventType")] = None,
                        start: Annotated[QueryDatetime | None,
                                         Query(alias="from", description="occurred at or after (with timezone)")] = None,
                        end: Annotated[QueryDatetime | None,
                                       Query(alias="to", description="occurred before (with timezone)")] = None,
                        page: Annotated[int, Query(ge=1, le=MAX_OFFSET)] = 1,
                        page_size: Annotated[int, Query(alias="pageSize", ge=1, le=1000)] = 100) -> EventPage:
    """Events of the devices the caller may receive events of, newest first."""
    admin = who.role is PlatformRole.ADMIN
    if device_id is not None and not admin:
        await require(registry, who, device_id, DeviceFunction.RECEIVE_EVENTS)
    events, total = await _store(registry).history(
        organisation=None if admin else who.identification, device_id=device_id, event_types=event_type or (),
        start=start, end=end, page=page, page_size=page_size)
    return EventPage(events=events, page=page, page_size=page_size, total=total)


@router.get("/subscriptions", response_model=list[SubscriptionPublic], response_model_by_alias=True)
async def list_subscriptions(registry: RegistryDep, who: Caller) -> list[SubscriptionPublic]:
    """The caller's subscriptions."""
    found = await _store(registry).subscriptions(organisation=who.identification)
    return [SubscriptionPublic(organisation=s.organisation, event_type=s.event_type, mqtt=s.mqtt, webhook=s.webhook)
            for s in found]


@router.put("/subscriptions/{event_type}", response_model=SubscriptionPublic, response_model_by_alias=True)
async def subscribe(registry: RegistryDep, who: Caller, event_type: EventType,
                    channels: SubscriptionChannels) -> SubscriptionPublic:
    """Receive ``event_type`` of every device the caller holds RECEIVE_EVENTS on, on the chosen channels."""
    if not channels.mqtt and not channels.webhook:
        raise Invalid("choose at least one channel (mqtt, webhook)")
    if channels.webhook:
        org = await registry.get_organisation(who.identification)
        if not org.webhook_url:
            raise Invalid(f"organisation {who.identification!r} has no webhook URL; set one first")
    sub = await _store(registry).subscribe(who.identification, event_type, mqtt=channels.mqtt,
                                                    webhook=channels.webhook)
    return SubscriptionPublic(organisation=sub.organisation, event_type=sub.event_type, mqtt=sub.mqtt,
                              webhook=sub.webhook)


@router.delete("/subscriptions/{event_type}", status_code=status.HTTP_204_NO_CONTENT)
async def unsubscribe(registry: RegistryDep, who: Caller, event_type: EventType) -> None:
    """Stop receiving ``event_type``."""
    if not await _store(registry).unsubscribe(who.identification, event_type):
        raise NotFound(f"organisation {who.identification!r} has no subscription to {event_type}")
