"""Notice the start of the kit's drain sequence, so endless watch streams can end before server.stop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from atp_common.server import RunningServer

# The kit has no drain hook; polling its flag this often ends watch streams well within the drain delay.
_POLL_S = 0.05


def on_drain(running: RunningServer, callback: Callable[[], None]) -> asyncio.Task[None]:
    """A task that calls `callback` once `running` starts draining; the caller owns (cancels) it."""

    async def wait() -> None:
        while not running.draining:  # noqa: ASYNC110 - the kit exposes a flag, not an event
            await asyncio.sleep(_POLL_S)
        callback()

    return asyncio.create_task(wait(), name="drain-watch")
