"""Integration fixtures: a private PostgreSQL cluster that tests may stop and crash, one database per test."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from tests.support.pg_cluster import PostgresCluster, find_bindir

# The same switch as the root conftest: in CI a missing PostgreSQL is a failure, not a skip.
REQUIRE_SERVICES = os.environ.get("ATP_REQUIRE_SERVICES", "") not in ("", "0", "false")


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    """A throwaway cluster from /usr/lib/postgresql/*/bin, shared by the session, deleted at its end."""
    bindir = find_bindir()
    if bindir is None:
        reason = (
            "NO POSTGRESQL BINARIES (initdb, pg_ctl) under /usr/lib/postgresql/*/bin: the tests that stop "
            "and crash PostgreSQL cannot run; install postgresql or set ATP_TEST_PG_BINDIR "
            "(ATP_REQUIRE_SERVICES=1 turns this skip into a failure)"
        )
        if REQUIRE_SERVICES:
            pytest.fail(reason)
        pytest.skip(reason)
    cluster = PostgresCluster(bindir)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
async def private_dsn(pg_cluster: PostgresCluster) -> AsyncIterator[str]:
    """A fresh database on the private cluster (started again if a test left it stopped), dropped after."""
    if not pg_cluster.running:
        pg_cluster.start()
    database = "t_" + secrets.token_hex(6)
    conn = await asyncpg.connect(pg_cluster.dsn(), timeout=10)
    try:
        await conn.execute(f"CREATE DATABASE {database}", timeout=30)
    finally:
        await conn.close()
    yield pg_cluster.dsn(database)
    if not pg_cluster.running:
        pg_cluster.start()
    conn = await asyncpg.connect(pg_cluster.dsn(), timeout=10)
    try:
        await conn.execute(f"DROP DATABASE {database} WITH (FORCE)", timeout=30)
    finally:
        await conn.close()
