"""PostgreSQL connections as the store uses them: the timestamp codec, what an outage looks like, migrations."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from datetime import date, datetime

import asyncpg

from atp_common.errors import AtpError, Unavailable
from atp_observer.store.layout import datetime_to_micros
from atp_observer.store.migrations import POSTGRES_MIGRATIONS_TABLE, Migration

# Errors that mean "the database cannot serve now", as opposed to a bug in a query.
UNAVAILABLE_ERRORS = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    # A server shutting down ends idle pooled connections with a FATAL; asyncpg may still hand one out, and
    # its next query fails with "another operation is in progress". The pool discards it on release, so
    # the retry gets a fresh connection (seen under `pg_ctl stop -m fast` with ingest running).
    asyncpg.exceptions.InternalClientError,
)
# A transaction that lost a deadlock (partition DDL against ingest) or hit a partition dropped under it is
# safe to run again from the start.
ATTEMPTS = 3
# PostgreSQL's epoch (2000-01-01 UTC) in microseconds after the Unix epoch. The pool exchanges timestamptz
# values as these integers (see register_codecs), which is also how they travel on the wire.
PG_EPOCH_MICROS = 946_684_800_000_000
PG_EPOCH_DATE = date(2000, 1, 1)


def to_pg_micros(value: datetime) -> int:
    """A datetime as the integer the pool exchanges for timestamptz."""
    return datetime_to_micros(value) - PG_EPOCH_MICROS


async def keep_session(conn: asyncpg.Connection) -> None:
    """Nothing to reset on release: the store takes only transaction-scoped locks, never LISTENs, SETs or
    leaves a cursor open, and keeps its temporary tables on purpose. (The pool still rolls back a
    transaction left open.) asyncpg's default reset costs a round trip on every release, that is one
    more per ingested batch."""


async def register_codecs(conn: asyncpg.Connection) -> None:
    """Exchange timestamptz as int8: microseconds since 2000-01-01 UTC, its binary wire format.

    Ingest then encodes a timestamp as an integer instead of building a datetime per value and having
    asyncpg convert it back (astimezone, subtraction, infinity checks): that was a large share of the CPU
    of a COPY of observations."""
    await conn.set_builtin_type_codec("timestamptz", schema="pg_catalog", codec_name="int8")


async def migrate(conn: asyncpg.Connection, migrations: Sequence[Migration]) -> None:
    """Apply those of `migrations` not applied yet, in one transaction."""
    async with conn.transaction():
        # Replicas starting together: one migrates, the others wait and then find nothing to do.
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.atp_observer_migrations'))"
        )
        await conn.execute(POSTGRES_MIGRATIONS_TABLE)
        applied = {row[0] for row in await conn.fetch("SELECT version FROM schema_migrations")}
        for migration in migrations:
            if migration.version in applied:
                continue
            for statement in migration.statements:
                await conn.execute(statement)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                migration.version,
                migration.name,
            )


@contextlib.contextmanager
def translate_errors(action: str) -> Iterator[None]:
    """Raise Unavailable for an error that means PostgreSQL cannot serve now; let the rest through."""
    try:
        yield
    except AtpError:
        raise
    except UNAVAILABLE_ERRORS as exc:
        if isinstance(exc, ValueError):
            # asyncpg's client-side DataError (an InterfaceError): a value the table cannot take is a
            # bug to report, not an outage to wait out.
            raise
        raise Unavailable(f"cannot {action} PostgreSQL: {type(exc).__name__}: {exc}") from exc
