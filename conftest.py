"""Test fixtures every tier shares: where the real PostgreSQL and Redis are, and how to treat their absence."""

from __future__ import annotations

import gc
import os
import secrets
import socket
from collections.abc import AsyncIterator, Generator
from urllib.parse import urlparse

import pytest

# Fixtures shared across tiers live in tests/support; registered here, the one conftest every test sees.
pytest_plugins = [
    "tests.support.gateway_fixtures",
    "tests.support.pg_fixtures",
    "tests.support.dialect_stack",
]

# CI sets this so a test that cannot reach a real server fails instead of skipping.
REQUIRE_SERVICES = os.environ.get("ATP_REQUIRE_SERVICES", "") not in ("", "0", "false")
POSTGRES_DSN = os.environ.get("ATP_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("ATP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.hookimpl(wrapper=True)
def pytest_collection(session: pytest.Session) -> Generator[None, object, object]:
    """Collect with the cyclic garbage collector off, and turn it back on for the tests.

    Collection imports most of the dependency tree: while the heap grows, each full collection walks all of
    it, and what the imports build lives for the whole run anyway. The heap is not frozen afterwards, as
    the services freeze theirs: `gc.get_referrers` cannot see frozen objects, and hypothesis's
    `register_random` relies on it when hypothesis is imported after collection (its warning fails the run).
    """
    gc.disable()
    try:
        return (yield)
    finally:
        gc.enable()


def _reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or default_port), 1.0):
            return True
    except OSError:
        return False


def _missing(what: str, url: str, env: str) -> None:
    reason = (
        f"no {what} reachable at {url}: set {env} to a running server "
        "(ATP_REQUIRE_SERVICES=1 turns this skip into a failure)"
    )
    if REQUIRE_SERVICES:
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
async def postgres_dsn() -> AsyncIterator[str]:
    """A DSN whose search_path is a fresh schema on the real PostgreSQL, dropped after the test."""
    if not _reachable(POSTGRES_DSN, 5432):
        _missing("PostgreSQL", POSTGRES_DSN, "ATP_TEST_POSTGRES_DSN")
    import asyncpg

    schema = "t_" + secrets.token_hex(6)
    conn = await asyncpg.connect(POSTGRES_DSN, timeout=10)
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
    finally:
        await conn.close()
    sep = "&" if "?" in POSTGRES_DSN else "?"
    yield f"{POSTGRES_DSN}{sep}options=-csearch_path%3D{schema}"
    conn = await asyncpg.connect(POSTGRES_DSN, timeout=10)
    try:
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
    finally:
        await conn.close()


@pytest.fixture
async def redis_url() -> AsyncIterator[str]:
    """The real Redis, with a key prefix unique to the test exposed as the URL's fragment-free form."""
    if not _reachable(REDIS_URL, 6379):
        _missing("Redis", REDIS_URL, "ATP_TEST_REDIS_URL")
    yield REDIS_URL
