"""Typed settings of the adapters service (environment prefix ATP_ADAPTERS_)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from atp_common.settings import ConfigReloadSettings, DirectorySettings, ServiceSettings


class AdaptersSettings(ServiceSettings, ConfigReloadSettings, DirectorySettings):
    """Where the adapters listen, which peers they talk to, and how their queues and spool are bounded."""

    model_config = SettingsConfigDict(**{**ServiceSettings.model_config, "env_prefix": "ATP_ADAPTERS_"})

    port: int = Field(50053, ge=0, le=65535)
    metrics_port: int | None = Field(9103, ge=0, le=65535)
    router_addr: str = Field("127.0.0.1:50051", description="host:port of the router (WatchPolicy).")
    observer_addr: str = Field("127.0.0.1:50052", description="host:port of the observer (Ingest).")
    spool_dir: str = Field(
        "var/spool", description="Where observation batches wait while the observer is away."
    )

    # Requests that name no tenant: internal callers must set one. Empty refuses them (InvalidArgument).
    default_tenant: str = Field("", description="Tenant assumed when a request names none; empty refuses.")
    request_timeout_s: float = Field(
        600.0, gt=0, description="Bound on one Generate call, failover included."
    )

    # Policy watch: reconnect with bounded exponential backoff while the router is away.
    watch_backoff_initial_s: float = Field(0.1, gt=0)
    watch_backoff_max_s: float = Field(5.0, gt=0)

    # Circuit reports to the router (ReportExclusions): deadline of one call, backoff between retries.
    report_timeout_s: float = Field(2.0, gt=0, description="Deadline of one circuit report.")
    report_backoff_initial_s: float = Field(0.1, gt=0)
    report_backoff_max_s: float = Field(5.0, gt=0)

    # Limits and budgets (enforced here, where every request passes) and the tenant directory.
    limits_fail_mode: Literal["open", "closed"] = Field(
        "closed", description="When the limits store is down: admit unchecked (open) or refuse (closed)."
    )
    limits_timeout_s: float = Field(0.25, gt=0, description="Socket timeout of one limits store call.")
    limits_lease_requests: int = Field(
        32,
        ge=0,
        description="Requests' worth of quota a replica leases from Redis while a tenant is far from its "
        "limits, spent without a round trip (0: one Redis call per request).",
    )
    default_output_tokens: int = Field(
        1024, ge=1, description="Output tokens reserved for a request without max_tokens."
    )

    # The response cache: in Redis when redis_url is set (shared by replicas), else in this process.
    cache_default_ttl_s: float = Field(300.0, gt=0, description="TTL when a request asks for the cache.")
    cache_max_entries: int = Field(10_000, ge=1, description="In-process cache: replies kept at most.")
    cache_max_bytes: int = Field(64 << 20, ge=1 << 16, description="In-process cache: bytes kept at most.")
    cache_max_reply_bytes: int = Field(1 << 20, ge=1024, description="Larger replies are not stored.")
    # Semantic cache: 1 KB per indexed question (a 256-float vector), so 2 MB per full tenant.
    cache_semantic_entries: int = Field(
        2048, ge=1, description="Semantic cache: questions indexed per tenant at most (LRU)."
    )
    cache_semantic_tenants: int = Field(
        32, ge=1, description="Semantic cache: tenants with an index at most (LRU)."
    )

    # Observation shipping.
    observation_queue_size: int = Field(10_000, ge=1, description="Observations buffered in memory.")
    # At a high rate the cost of an Ingest call (gRPC and a transaction, on both sides) rivals that of the
    # observations it carries, so large batches cost the observer less CPU per observation (figures in
    # docs/design-notes.md, "Figures behind the code"). A slow trickle still ships every ship_interval_s.
    ship_batch_size: int = Field(1024, ge=1, description="Observations per Ingest batch, at most.")
    ship_interval_s: float = Field(0.5, gt=0, description="Longest an observation waits for its batch.")
    ship_timeout_s: float = Field(5.0, gt=0, description="Deadline of one Ingest call.")
    ship_backoff_max_s: float = Field(5.0, gt=0, description="Longest pause between delivery attempts.")
    observation_log_max_bytes: int = Field(
        256 << 20,
        ge=1 << 16,
        description="Cap of the observation log (spool_dir/log); beyond it observations ship from memory only.",
    )
    observation_log_sync_s: float = Field(
        1.0, gt=0, description="fsync cadence of the observation log: what a machine crash can lose."
    )
    spool_max_bytes: int = Field(
        1 << 30, ge=1 << 16, description="Spool file cap; beyond it batches are dropped."
    )
