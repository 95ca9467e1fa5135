"""Which concentrator birth or death to believe: the pure rule behind the status consumer.

Births and deaths arrive retained, possibly redelivered and possibly out of order (a will
from an old connection published late, a retained birth replayed on resubscribe). Rules:

- A birth (ONLINE) is believed if it is newer than what we hold (timestamp), unless what we
  hold is the death of that very connection (same ``session``): a connection that died
  cannot be born again, only a later one.
- A death (OFFLINE) numbered with ``session`` > 0 is stale, and ignored, if we hold a birth
  of a later connection (higher session). A will carries the timestamp of when it was set
  (the connect), always older than its own birth, so timestamps cannot order deaths.
- A death with ``session`` 0 is unnumbered (the concentrator did not stamp its will per
  connection); it is believed when we hold ONLINE, and recorded at the time it was received
  so a replayed older birth cannot undo it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from broker.schemas import ConcentratorStatus


@dataclass(frozen=True, slots=True)
class HeldStatus:
    """What the database holds for a concentrator."""

    state: str
    session: int
    status_at: datetime


def decide(held: HeldStatus | None, incoming: ConcentratorStatus, *, received_at: datetime) -> HeldStatus | None:
    """The status to hold after ``incoming``, or None to ignore it as stale or redundant."""
    if incoming.state == "ONLINE":
        if held is None:
            return HeldStatus("ONLINE", incoming.session, incoming.timestamp)
        if held.state == "OFFLINE" and held.session == incoming.session and incoming.session > 0:
            return None  # a replayed birth of the connection whose death we already hold
        if incoming.timestamp <= held.status_at:
            return None
        return HeldStatus("ONLINE", incoming.session, incoming.timestamp)
    if held is not None and held.state == "OFFLINE":
        return None  # already dead; a second death changes nothing
    if held is not None and 0 < incoming.session < held.session:
        return None  # the will of an older connection, published after a newer birth
    return HeldStatus("OFFLINE", incoming.session, max(incoming.timestamp, received_at))
