"""Typed settings of the observer service (environment prefix ATP_OBSERVER_)."""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from atp_common.settings import ServiceSettings


class ObserverSettings(ServiceSettings):
    """Where the observer listens, which database it writes, and how its ingest buffer is bounded."""

    model_config = SettingsConfigDict(**{**ServiceSettings.model_config, "env_prefix": "ATP_OBSERVER_"})

    port: int = Field(50052, ge=0, le=65535)
    metrics_port: int | None = Field(9102, ge=0, le=65535)

    database_url: str = Field("", description="postgresql://... DSN; empty stores in SQLite.")
    sqlite_path: str = Field("var/observer.sqlite3", description="SQLite file when no DSN is set.")
    pool_min_size: int = Field(2, ge=1, description="asyncpg pool: connections kept open.")
    pool_max_size: int = Field(10, ge=1, description="asyncpg pool: connections at most.")
    retention_days: int = Field(90, ge=1, description="Observations older than this are deleted.")
    maintain_interval_s: float = Field(3600.0, gt=0, description="Period of partition/retention upkeep.")

    # Ingest: batches wait in a bounded buffer for a writer; through a database outage they stay there
    # (retried with backoff) until the buffer is full, and then senders are pushed back to their spool.
    buffer_observations: int = Field(50_000, ge=1, description="Observations buffered before push-back.")
    # Both caps keep a transaction's reward events under 2^20, the positions a PostgreSQL reward cursor
    # holds (store/postgres.py).
    max_batch_observations: int = Field(
        10_000, ge=1, le=1_000_000, description="Largest batch one Ingest message may carry."
    )
    writers: int = Field(0, ge=0, description="Concurrent batch writers; 0: 1 for SQLite, 4 for PostgreSQL.")
    merge_observations: int = Field(
        4096,
        ge=1,
        le=1_000_000,
        description="Most observations a writer commits at once, merging the batches waiting.",
    )
    buffer_wait_s: float = Field(1.0, ge=0, description="How long a batch waits for buffer room.")
    commit_timeout_s: float = Field(30.0, gt=0, description="How long a sender waits for its commit.")
    retry_initial_s: float = Field(0.05, gt=0, description="First pause after a failed write.")
    retry_max_s: float = Field(2.0, gt=0, description="Longest pause between write attempts.")
    flush_timeout_s: float = Field(10.0, gt=0, description="Bound on writing the buffer out at shutdown.")

    # Reward stream.
    rewards_max_batch: int = Field(1000, ge=1, description="Events per WatchRewards message, at most.")
    rewards_poll_s: float = Field(1.0, gt=0, description="Poll for rewards written by other replicas.")

    @model_validator(mode="after")
    def _consistent(self) -> ObserverSettings:
        if self.pool_min_size > self.pool_max_size:
            raise ValueError("pool_min_size must not exceed pool_max_size")
        if self.max_batch_observations > self.buffer_observations:
            raise ValueError("max_batch_observations must not exceed buffer_observations")
        return self

    @property
    def writer_count(self) -> int:
        """Concurrent batch writers: SQLite has one writer anyway; PostgreSQL takes a few in parallel."""
        if self.writers:
            return min(self.writers, self.pool_max_size) if self.database_url else self.writers
        return min(4, self.pool_max_size) if self.database_url else 1
