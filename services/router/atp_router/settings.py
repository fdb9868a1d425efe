"""Typed settings of the router service (environment prefix ATP_ROUTER_)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from atp_common.settings import ConfigReloadSettings, DirectorySettings, ServiceSettings


class RouterSettings(ServiceSettings, ConfigReloadSettings, DirectorySettings):
    """Where the router listens, where it learns from, and how its snapshots and decision log are bounded.

    Tenants and keys set through AdminService, and the adapters' circuit reports, live in Redis when
    redis_url is set (shared by every replica), else in directory_path and in this process (one host)."""

    model_config = SettingsConfigDict(**{**ServiceSettings.model_config, "env_prefix": "ATP_ROUTER_"})

    port: int = Field(50051, ge=0, le=65535)
    metrics_port: int | None = Field(9101, ge=0, le=65535)
    observer_addr: str = Field("", description="host:port of the observer; empty: no learning (standalone).")

    # Snapshots: a change is published at most once per interval; changes in between coalesce into one.
    snapshot_min_interval_s: float = Field(1.0, ge=0, description="Least time between two snapshots.")

    # Circuit reports from adapters replicas: how long one may exclude a model without being renewed, and
    # how many replicas (and exclusions per report) are remembered.
    exclusion_max_hold_s: float = Field(600.0, gt=0, description="Longest a reported exclusion lasts.")
    exclusion_max_replicas: int = Field(4096, ge=1, description="Reporting replicas remembered.")
    exclusion_max_per_report: int = Field(1024, ge=1, description="Exclusions accepted in one report.")
    # With Redis, every router replica shares the reports it takes and merges everyone's (see redis_url).
    exclusion_share_poll_s: float = Field(
        0.25, gt=0, description="How often the shared circuit reports' version is checked."
    )
    exclusion_share_timeout_s: float = Field(0.5, gt=0, description="Deadline of one shared-report call.")

    decision_log_size: int = Field(20_000, ge=1, description="Route decisions kept for Explain (LRU).")
    seed: int | None = Field(None, description="Seed of the policy's sampling (tests, evaluations).")

    # Learning: calls to the observer and the reward stream's reconnect backoff.
    observer_timeout_s: float = Field(10.0, gt=0, description="Deadline of unary calls to the observer.")
    rewards_max_batch: int = Field(1000, ge=1, description="Reward events per message asked for.")
    rewards_backoff_initial_s: float = Field(0.2, gt=0)
    rewards_backoff_max_s: float = Field(10.0, gt=0)
    learning_decay: float = Field(1.0, gt=0, le=1, description="Per-step discount of old rewards (1: none).")
    # How a cold router gets its learning state: `stats` seeds arms from the observer's aggregates (fast,
    # but the contextual regression and decay start fresh), `replay` re-reads every reward event (exact),
    # `auto` replays when a route is contextual or decay is on, and uses the aggregates otherwise.
    bootstrap: Literal["auto", "stats", "replay"] = "auto"
