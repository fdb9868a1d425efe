"""The observations table's daily partitions in PostgreSQL: created ahead of time, dropped past retention."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

import asyncpg

from atp_observer.store.pg_session import PG_EPOCH_DATE

ONE_DAY = timedelta(days=1)
_DAY_MICROS = 86_400_000_000
_PARTITION_NAME = re.compile(r"^observations_p(\d{8})$")


def _partition_name(day: date) -> str:
    return f"observations_p{day:%Y%m%d}"


def _day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def days_of(started_micros: Iterable[int]) -> set[date]:
    """The days of these start times (microseconds after PostgreSQL's epoch, as the pool exchanges them)."""
    return {
        PG_EPOCH_DATE + timedelta(days=day) for day in {micros // _DAY_MICROS for micros in started_micros}
    }


class DailyPartitions:
    """Which daily partitions exist, so the ingest path skips the catalog for days it has seen.

    `lock` is the advisory lock key that serialises creators and droppers across replicas."""

    def __init__(self) -> None:
        self.lock = 0
        self._known: set[date] = set()

    def forget(self, days: Iterable[date] | None = None) -> None:
        """Forget `days` (all when None): another replica may have dropped them."""
        if days is None:
            self._known.clear()
        else:
            self._known.difference_update(days)

    async def ensure(self, conn: asyncpg.Connection, days: Iterable[date]) -> None:
        """Create the daily partitions that `days` need and that are not known to exist."""
        missing = sorted(set(days) - self._known)
        if not missing:
            return
        async with conn.transaction():
            # Serialise creators: two replicas seeing the same new day must not both CREATE.
            await conn.execute("SELECT pg_advisory_xact_lock($1)", self.lock)
            for day in missing:
                name = _partition_name(day)
                if await conn.fetchval("SELECT to_regclass($1) IS NULL", name):
                    start, end = _day_start(day), _day_start(day + ONE_DAY)
                    await conn.execute(
                        f'CREATE TABLE "{name}" PARTITION OF observations '
                        f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
                    )
        self._known.update(missing)

    async def drop_before(self, conn: asyncpg.Connection, cutoff: datetime) -> None:
        """Drop the partitions whose day ended by `cutoff`."""
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", self.lock)
            names = await conn.fetch(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'observations'::regclass"
            )
            for (name,) in names:
                match = _PARTITION_NAME.match(name)
                if match is None:
                    continue
                day = datetime.strptime(match.group(1), "%Y%m%d").date()
                if _day_start(day + ONE_DAY) <= cutoff:
                    await conn.execute(f'DROP TABLE "{name}"')
                    self._known.discard(day)
