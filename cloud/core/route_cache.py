"""How the core reaches each device, remembered briefly.

A burst of commands to a fleet (a city's street lights switched at dusk) would otherwise ask
the registry for every device's route once per command. A route change (a meter moved to
another concentrator) is seen within :data:`ROUTE_CACHE_SECONDS`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from cloud.core.functions import SEQUENTIAL_PROTOCOLS
from cloud.registry import Route

ROUTE_CACHE_SECONDS = 30.0
ROUTE_CACHE_SIZE = 100_000


class RouteCache:
    """Routes by device, each kept for ``ttl`` seconds; ``lookup`` asks the registry (and raises its errors)."""

    def __init__(self, *, lookup: Callable[[str], Awaitable[Route]], ttl: float = ROUTE_CACHE_SECONDS,
                 size: int = ROUTE_CACHE_SIZE, clock: Callable[[], float] = time.monotonic) -> None:
        self._lookup = lookup
        self._ttl = ttl
        self._size = size
        self._clock = clock
        self._routes: dict[str, tuple[float, Route]] = {}

    async def route(self, device: str) -> Route:
        """``device``'s route, from memory while fresh, else from the registry."""
        cached = self._routes.get(device)
        if cached is not None and cached[0] > self._clock():
            return cached[1]
        route = await self._lookup(device)
        self.remember(route)
        return route

    def remember(self, route: Route) -> None:
        """Keep ``route`` (learnt some other way, such as the one-query authorisation check)."""
        if len(self._routes) > self._size:
            # Dropping everything is cheap and rare; the next commands refill what is still in use.
            self._routes.clear()
        self._routes[route.device_id] = (self._clock() + self._ttl, route)

    def may_be_sequential(self, device: str) -> bool:
        """Whether ``device`` may take one command at a time, so may hold a device lock (not known: assume
        so, since releasing a lock that is not held is harmless)."""
        cached = self._routes.get(device)
        return cached is None or cached[1].protocol in SEQUENTIAL_PROTOCOLS
