"""Schedules kept on devices behind a concentrator (a meter's or relay's tariff schedule): at each
connection of their concentrator, what did not get there is sent again.

Subscribes ``concentrator/+/status`` in the shared group ``device-schedules`` and acts on the
first ONLINE status of each connection (``session``) this process sees. For every schedule whose
device is behind that concentrator and not known to hold it (:meth:`DeviceScheduleStore.unconfirmed`),
the request that last sent it decides:

- SUCCEEDED: the edge wrote it and read it back; it counts as held.
- PENDING: still on its way (the concentrator's durable session holds the command): wait.
- ended otherwise (expired while the concentrator was away, timed out, the device unreachable):
  sent again, as a request of the organisation that set it, claimed in one transaction.
- refused by the device or the platform (invalid, unsupported, not authorised): the same
  schedule would be refused again; left for the organisation to set another, and logged.
"""

from __future__ import annotations

import logging

from pydantic import ValidationError

from broker import topics
from broker.errors import Forbidden, Invalid, NotFound
from broker.schemas import ConcentratorStatus
from broker.session import Message, MqttSession
from cloud.domains.device_schedules import DeviceScheduleState, DeviceScheduleStore, Resend
from cloud.domains.requests import PENDING, RequestStore
from cloud.registry import DeviceNotFound, Registry

log = logging.getLogger(__name__)

SHARE_GROUP = "device-schedules"
# Outcomes that sending the same schedule again would not change.
REFUSALS = frozenset({"INVALID_PARAMETERS", "UNSUPPORTED_COMMAND", "NOT_AUTHORISED", "UNKNOWN_DEVICE"})


class ConcentratorScheduleKeeper:
    """Sends the schedules the devices behind a concentrator lack when it connects."""

    def __init__(self, *, session: MqttSession, store: DeviceScheduleStore, requests: RequestStore,
                 registry: Registry, resend: Resend) -> None:
        self._session = session
        self.store = store
        self.requests = requests
        self.registry = registry
        self._resend = resend
        self._sessions: dict[str, int] = {}  # concentrator -> the connection last reconciled
        self.resent = 0

    async def start(self, *, group: str = SHARE_GROUP) -> None:
        await self._session.subscribe(topics.shared(group, topics.ALL_CONCENTRATOR_STATUS), self.handle)

    async def handle(self, message: Message) -> None:
        if not message.payload:
            return  # a cleared retained status
        try:
            cid = topics.parse(message.topic).concentrator
            status = ConcentratorStatus.model_validate_json(message.payload)
        except (topics.TopicError, ValidationError) as exc:
            log.warning("bad status on %s: %s; payload %r", message.topic, exc, message.payload[:200])
            return
        if cid is None or status.concentrator_id != cid or status.state != "ONLINE":
            return
        if self._sessions.get(cid) == status.session:
            return  # this connection is reconciled already (a periodic status)
        await self.reconcile(cid)
        self._sessions[cid] = status.session

    async def reconcile(self, cid: str) -> list[str]:
        """Settle the schedules of ``cid``'s devices; the devices sent theirs again."""
        sent: list[str] = []
        for state in await self.store.unconfirmed():
            try:
                if (await self.registry.get_device(state.device)).concentrator_id != cid:
                    continue
            except DeviceNotFound:
                continue
            if await self._settle(state):
                sent.append(state.device)
        return sent

    async def _settle(self, state: DeviceScheduleState) -> bool:
        last = await self.requests.get(state.sent_correlation) if state.sent_correlation else None
        if last is not None and last.status == "SUCCEEDED":
            await self.store.confirm(state.device, version=state.version)
            return False
        if last is not None and last.status == PENDING:
            return False
        codes = {last.error.code} if last is not None and last.error is not None else set()
        if codes & REFUSALS:
            log.warning("schedule version %d of %s was refused (%s); not sent again", state.version, state.device,
                        ", ".join(sorted(codes)))
            return False
        claimed = await self.store.claim_resend(state.device, version=state.version, after=state.sent_correlation)
        if claimed is None:
            return False
        try:
            correlation = await self._resend(claimed)
        except (Forbidden, Invalid, NotFound) as exc:
            log.warning("schedule version %d of %s not sent again for %s: %s", state.version, state.device,
                        state.organisation, exc)
            return False
        await self.store.sent(state.device, version=state.version, correlation=correlation)
        self.resent += 1
        log.info("schedule version %d sent again to %s (last sending %s: %s) as request %s", state.version,
                 state.device, state.sent_correlation, last.status if last is not None else "unknown", correlation)
        return True
