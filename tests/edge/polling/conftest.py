"""Fixtures for the poller tests: fail any test that leaves a task running."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest


@pytest.fixture(autouse=True)
async def no_leaked_tasks() -> AsyncIterator[None]:
    yield
    current = asyncio.current_task()
    # Give cancelled tasks one loop turn to finish before calling them leaked.
    for _ in range(5):
        leftover = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
        if not leftover:
            break
        await asyncio.sleep(0)
    assert not leftover, f"tasks left running: {[t.get_name() for t in leftover]}"
