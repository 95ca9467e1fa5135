"""Run a fleet of simulated street lights (``gridwire sim lights``) over a few MQTT sessions."""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack

from broker.session import MqttSession
from edge.devices.street_light import LightState, StreetLightFleet

log = logging.getLogger(__name__)


def light_ids(count: int, *, prefix: str = "light-") -> list[str]:
    """``light-1`` .. ``light-<count>``: the ids the registry and the benchmark use."""
    return [f"{prefix}{i}" for i in range(1, count + 1)]


async def run_lights(stop: asyncio.Event, *, count: int, host: str, port: int, username: str, password: str,
                     sessions: int = 1, prefix: str = "light-", client_id: str = "light-fleet",
                     inflight: int = 1000, initial_status: bool = True,
                     ready: asyncio.Event | None = None) -> None:
    """Serve ``count`` lights, split over ``sessions`` connections, until ``stop`` is set.

    Several connections split ``$share/lights/device/+/command`` and share the lights' states, so
    the account needs the fleet role (read ``device/+/command``, write ``device/+/response``
    and ``device/+/status``). Session ``n`` has client id ``<client_id>-<n>``; ``ready`` is
    set once every session subscribed.
    """
    states = {light_id: LightState() for light_id in light_ids(count, prefix=prefix)}
    fleets: list[StreetLightFleet] = []
    async with AsyncExitStack() as exits:
        for n in range(sessions):
            session = await exits.enter_async_context(MqttSession(
                client_id=f"{client_id}-{n}", host=host, port=port, username=username, password=password,
                receive_maximum=inflight, max_inflight=inflight))
            # One session needs no shared group: a member left behind in one (a replaced fleet's
            # durable session) would be handed its share of the commands, for nobody.
            fleet = StreetLightFleet(session=session, lights=states, share_group="lights" if sessions > 1 else None)
            fleets.append(fleet)
            await fleet.start(publish_initial_status=initial_status and n == 0)
        log.info("%d street lights on %d session(s)", count, sessions)
        if ready is not None:
            ready.set()
        # The lights share their states: one fleet runs their own schedules (set_light_schedule)
        # and, if it publishes their status, a birth of each at every reconnection.
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(fleets[0].run_schedules(stop), name="light-schedules")
            if initial_status:
                tasks.create_task(fleets[0].run_births(stop), name="light-births")
    # What the fleet did, for a benchmark's exactly-once check (each light carries out a command once).
    log.info("street lights: %d commands carried out, %d repeats answered, %d lights on",
             sum(f.commands_handled for f in fleets), sum(f.repeats for f in fleets),
             sum(state.on for state in states.values()))
