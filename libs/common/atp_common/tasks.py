"""Stopping the background tasks a component owns: cancel, wait, and never swallow the caller's own cancel."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger("atp.tasks")


async def cancel_and_wait(*tasks: asyncio.Future[Any] | None) -> None:
    """Cancel every task given (None is skipped) and wait until all have finished.

    Unlike `suppress(CancelledError): await task`, a cancellation of the caller itself propagates instead
    of being taken for the task's; an error a task ended with is logged rather than lost or raised out of
    a close that must go on closing other things."""
    live = [task for task in tasks if task is not None]
    for task in live:
        task.cancel()
    if not live:
        return
    await asyncio.wait(live)
    for task in live:
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s ended with an error", task, exc_info=task.exception())
