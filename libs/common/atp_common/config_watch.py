"""The configuration file, watched: a changed file is reloaded, and a bad one is logged and ignored."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import signal
from collections.abc import Awaitable, Callable

from prometheus_client import Counter

from atp_common.config import AtpConfig, load_config
from atp_common.errors import AtpError
from atp_common.tasks import cancel_and_wait

log = logging.getLogger("atp.config")

CONFIG_RELOADS = Counter("atp_config_reloads_total", "Configuration reloads, by result.", ["result"])


class ConfigWatcher:
    """Polls the file's modification time (and reloads on SIGHUP); hands each valid new config on.

    `on_change` may be a coroutine function; one that raises an AtpError rejects the configuration (the
    old one stays in force), like a file that does not parse.
    """

    def __init__(
        self,
        path: str,
        on_change: Callable[[AtpConfig], Awaitable[None] | None],
        *,
        poll_s: float,
        sighup: bool,
    ) -> None:
        self._path = path
        self._on_change = on_change
        self._poll_s = poll_s
        self._sighup = sighup
        self._stamp = self._stat()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self._path)
        except OSError:
            return None
        # Size and inode too: an editor's rename-into-place within one mtime tick still counts as a change.
        return st.st_mtime_ns, st.st_size, st.st_ino

    def start(self) -> None:
        """Start watching (no-op without a file: the built-in defaults never change)."""
        if not self._path:
            return
        if self._sighup:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._wake.set)
        self._task = asyncio.create_task(self._run(), name="config-watch")

    async def close(self) -> None:
        """Stop watching."""
        if self._task is None:
            return
        if self._sighup:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _run(self) -> None:
        while True:
            forced = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_s)
                forced = True
            self._wake.clear()
            stamp = self._stat()
            if stamp == self._stamp and not forced:
                continue
            self._stamp = stamp
            await self.reload()

    async def reload(self) -> bool:
        """Load the file now; a valid config goes to `on_change`, a bad one is logged and the old one stays."""
        try:
            config = load_config(self._path)
            outcome = self._on_change(config)
            if inspect.isawaitable(outcome):
                await outcome
        except AtpError as exc:
            CONFIG_RELOADS.labels("rejected").inc()
            log.error("ignoring the new configuration, keeping the current one: %s", exc.message)
            return False
        CONFIG_RELOADS.labels("applied").inc()
        log.info("configuration reloaded", extra={"path": self._path, "digest": config.digest()})
        return True
