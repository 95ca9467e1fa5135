"""Group commit: items arriving during a flush share the next one; each caller gets its own answer."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from cloud.group_commit import GroupCommit


class Flusher:
    """A flush that records its batches and can be held open."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.hold = asyncio.Event()
        self.hold.set()
        self.entered = asyncio.Event()
        self.fail_on: int | None = None

    async def __call__(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        self.entered.set()
        await self.hold.wait()
        if self.fail_on is not None and self.fail_on in items:
            raise ValueError(f"cannot take {self.fail_on}")
        return [item * 10 for item in items]


async def test_alone_an_item_is_flushed_at_once() -> None:
    flusher = Flusher()
    commit = GroupCommit(flusher, name="t")
    assert await commit(1) == 10
    assert flusher.batches == [[1]]


async def test_items_arriving_during_a_flush_share_the_next_one() -> None:
    flusher = Flusher()
    flusher.hold.clear()
    commit = GroupCommit(flusher, name="t", max_batch=3)
    first = asyncio.create_task(commit(1))
    await flusher.entered.wait()
    rest = [asyncio.create_task(commit(n)) for n in range(2, 7)]
    await asyncio.sleep(0)  # on purpose: let them queue behind the held flush
    flusher.hold.set()
    assert await first == 10
    assert [await r for r in rest] == [20, 30, 40, 50, 60]
    assert flusher.batches == [[1], [2, 3, 4], [5, 6]]  # at most max_batch each
    assert (commit.flushes, commit.items) == (3, 6)
    await commit.close()


async def test_a_failed_flush_fails_its_callers_and_the_writer_goes_on() -> None:
    flusher = Flusher()
    flusher.hold.clear()
    flusher.fail_on = 3
    commit = GroupCommit(flusher, name="t")
    first = asyncio.create_task(commit(1))
    await flusher.entered.wait()
    failing = [asyncio.create_task(commit(n)) for n in (2, 3)]
    await asyncio.sleep(0)
    flusher.hold.set()
    assert await first == 10
    for task in failing:
        with pytest.raises(ValueError, match="cannot take 3"):
            await task
    assert await commit(4) == 40


async def test_a_wrong_number_of_answers_is_an_error_not_a_mix_up() -> None:
    async def short(items: Sequence[int]) -> list[int]:
        return list(items)[:-1]

    commit = GroupCommit(short, name="short")
    with pytest.raises(RuntimeError, match="0 answers for 1 items"):
        await commit(1)
