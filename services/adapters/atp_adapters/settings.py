"""Typed settings of the adapters service (environment prefix ATP_ADAPTERS_)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from atp_common.settings import ServiceSettings


class AdaptersSettings(ServiceSettings):
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

    # Observation shipping.
    observation_queue_size: int = Field(10_000, ge=1, description="Observations buffered in memory.")
    ship_batch_size: int = Field(256, ge=1, description="Observations per Ingest batch, at most.")
    ship_interval_s: float = Field(0.5, gt=0, description="Longest an observation waits for its batch.")
    ship_timeout_s: float = Field(5.0, gt=0, description="Deadline of one Ingest call.")
    ship_backoff_max_s: float = Field(5.0, gt=0, description="Longest pause between delivery attempts.")
    spool_max_bytes: int = Field(
        1 << 30, ge=1 << 16, description="Spool file cap; beyond it batches are dropped."
    )
