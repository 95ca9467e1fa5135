"""The session's in-flight window: at most its size held, waiters served in order, cancellation safe."""

from __future__ import annotations

import asyncio

import pytest

from broker.window import Window


async def test_holders_never_exceed_the_size_and_waiters_go_in_arrival_order() -> None:
    window = Window(2)
    held, most, order = 0, 0, []

    async def hold(n: int) -> None:
        nonlocal held, most
        await window.acquire()
        held += 1
        most = max(most, held)
        order.append(n)
        await asyncio.sleep(0)
        held -= 1
        window.release()

    await asyncio.gather(*(hold(n) for n in range(50)))
    assert most == 2 and order == list(range(50)) and window.free == 2


async def test_a_cancelled_waiter_neither_takes_nor_loses_a_slot() -> None:
    window = Window(1)
    await window.acquire()
    first = asyncio.ensure_future(window.acquire())
    second = asyncio.ensure_future(window.acquire())
    await asyncio.sleep(0)
    first.cancel()  # cancelled while waiting
    await asyncio.gather(first, return_exceptions=True)
    window.release()  # goes to the second, past the cancelled one
    await asyncio.wait_for(second, 1)
    # Handed the slot, then cancelled before it ran: the slot passes on instead of being lost.
    third = asyncio.ensure_future(window.acquire())
    await asyncio.sleep(0)
    window.release()
    third.cancel()
    with pytest.raises(asyncio.CancelledError):
        await third
    assert window.free == 1
    await asyncio.wait_for(window.acquire(), 1)
    assert window.free == 0
