"""Observer unit fixtures: SQLite stores in a temp dir (the PostgreSQL runs are in tests/integration)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from atp_observer.store import Store
from tests.support.observations import sqlite_stores


@pytest.fixture
def make_store(tmp_path: Path) -> Callable[..., Store]:
    """Builds unopened SQLite stores, all on the same file."""
    return sqlite_stores(tmp_path)


@pytest.fixture
async def store(make_store: Callable[..., Store]) -> AsyncIterator[Store]:
    async with make_store() as opened:
        yield opened
