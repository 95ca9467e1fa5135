"""The event loop a process can run on: uvloop's (a cloud dependency) when ``_cloud_process`` is
asked for it, asyncio's own otherwise. No process asks by default: on uvloop the API, core and
domain made 40,000 lights switched in bulk take 63-100 s instead of 43 s (bench/README.md, issue 12)."""

from __future__ import annotations

import asyncio

import uvloop

from cloud.runtime import api_event_loop
from gridwire.process import run_until_signal


def test_run_until_signal_runs_main_on_the_loop_the_factory_makes() -> None:
    seen: list[type] = []

    async def main(stop: asyncio.Event) -> None:
        assert not stop.is_set()
        seen.append(type(asyncio.get_running_loop()))

    run_until_signal(main, loop_factory=api_event_loop())
    run_until_signal(main)
    assert seen[0] is uvloop.Loop
    assert seen[1] is not uvloop.Loop and issubclass(seen[1], asyncio.BaseEventLoop)
