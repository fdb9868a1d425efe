"""The observer's storage: observations, feedback and reward events in SQLite or PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from atp_common.errors import ConfigError
from atp_observer.store.base import Store
from atp_observer.store.postgres import PostgresStore
from atp_observer.store.rewards import RewardModel, RewardWeights
from atp_observer.store.sqlite import SqliteStore

__all__ = ["PostgresStore", "RewardModel", "RewardWeights", "SqliteStore", "Store", "open_store"]

_POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def open_store(
    database_url: str,
    sqlite_path: str | Path,
    *,
    reward_model: RewardModel,
    pool_min: int = 1,
    pool_max: int = 10,
    retention_days: int = 30,
) -> Store:
    """The store the configuration names: SQLite at `sqlite_path` when `database_url` is empty,
    PostgreSQL for a `postgresql://` URL. Nothing is connected yet: `await store.open()`, or use
    `async with open_store(...) as store`. An unreachable database is an error, never a fallback."""
    if not database_url:
        return SqliteStore(sqlite_path, reward_model=reward_model, retention_days=retention_days)
    if database_url.startswith(_POSTGRES_SCHEMES):
        return PostgresStore(
            database_url, pool_min, pool_max, reward_model=reward_model, retention_days=retention_days
        )
    scheme = database_url.split(":", 1)[0]
    raise ConfigError(f"unsupported database URL scheme {scheme!r}: use postgresql:// or leave it empty")
