"""Garbage-collector settings for long-running services: what survived start-up is frozen out of collections."""

from __future__ import annotations

import gc


def freeze_startup_heap() -> None:
    """Collect once, then move every object alive after start-up into the permanent generation.

    Imported modules, settings, compiled policies and channels live as long as the process. Left in the
    oldest generation, every full collection walks them all, a pause that the request in flight waits out
    (figures in docs/design-notes.md, "Figures behind the code"). Frozen, a full collection walks only what
    was allocated since. Call it once, when the service is ready.
    """
    gc.collect()
    gc.freeze()
