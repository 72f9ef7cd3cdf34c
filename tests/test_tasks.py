"""cancel_and_wait: ends owned tasks, and never swallows the caller's own cancellation."""

from __future__ import annotations

import asyncio

import pytest

from sentinel.tasks import cancel_and_wait


async def test_cancels_and_waits_for_every_task() -> None:
    started = asyncio.Event()

    async def wait_forever() -> None:
        started.set()
        await asyncio.Event().wait()

    async def fail() -> None:
        raise RuntimeError("boom")

    waiter, failing = asyncio.create_task(wait_forever()), asyncio.create_task(fail())
    await started.wait()
    await cancel_and_wait(waiter, failing)
    assert waiter.cancelled()
    assert isinstance(failing.exception(), RuntimeError)


async def test_the_callers_own_cancellation_is_not_swallowed() -> None:
    running, cleanup_started = asyncio.Event(), asyncio.Event()

    async def slow_to_stop() -> None:
        running.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cleanup_started.set()
            await asyncio.Event().wait()  # a cleanup that only a second cancel ends

    async def owner(task: asyncio.Task[None]) -> str:
        await cancel_and_wait(task)
        return "finished as if nobody had cancelled it"

    owned = asyncio.create_task(slow_to_stop())
    await running.wait()
    owner_task = asyncio.create_task(owner(owned))
    await cleanup_started.wait()
    owner_task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await owner_task
    assert owner_task.cancelled()
    assert owned.cancelled()
