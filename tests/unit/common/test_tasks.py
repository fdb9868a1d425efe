"""cancel_and_wait: tasks stopped and awaited, errors logged, the caller's own cancellation kept."""

from __future__ import annotations

import asyncio
import logging

import pytest

from atp_common.tasks import cancel_and_wait


async def test_every_task_is_cancelled_and_finished_and_none_is_skipped() -> None:
    cleaned: list[str] = []

    async def worker(name: str) -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(0)  # cleanup that itself awaits still runs to the end
            cleaned.append(name)

    first, second = asyncio.create_task(worker("a")), asyncio.create_task(worker("b"))
    await asyncio.sleep(0)
    await cancel_and_wait(first, None, second)
    assert first.done() and second.done() and sorted(cleaned) == ["a", "b"]
    await cancel_and_wait()
    await cancel_and_wait(first)  # already finished: nothing to do, nothing raised


async def test_an_error_a_task_ended_with_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    async def broken() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(broken())
    await asyncio.sleep(0)
    with caplog.at_level(logging.ERROR, logger="atp.tasks"):
        await cancel_and_wait(task)
    assert "ended with an error" in caplog.text and "boom" in caplog.text


async def test_the_callers_own_cancellation_propagates() -> None:
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue  # refuses to stop until released

    owned = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    closer = asyncio.create_task(cancel_and_wait(owned))
    await asyncio.sleep(0.01)
    closer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closer
    release.set()
    await owned
