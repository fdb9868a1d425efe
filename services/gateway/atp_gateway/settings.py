"""Typed settings of the gateway (environment prefix ATP_GATEWAY_)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from atp_common.settings import DirectorySettings, ServiceSettings
from atp_gateway.edge import EdgeLimits


class GatewaySettings(ServiceSettings, DirectorySettings):
    """The HTTP edge's settings. The shared fields (config, logging, drain, TLS for its clients) come from
    ServiceSettings; host and port are the HTTP listener here, not a gRPC one."""

    model_config = SettingsConfigDict(**{**ServiceSettings.model_config, "env_prefix": "ATP_GATEWAY_"})

    port: int = Field(8080, ge=0, le=65535, description="HTTP port; 0 picks a free one (tests).")
    metrics_port: int | None = Field(9100, ge=0, le=65535, description="Prometheus port; unset disables.")
    adapters_addr: str = Field("127.0.0.1:50053", description="host:port of the adapters (Generate).")
    router_addr: str = Field("127.0.0.1:50051", description="host:port of the router (admin, dry runs).")
    observer_addr: str = Field("127.0.0.1:50052", description="host:port of the observer (feedback).")
    workers: int = Field(1, ge=1, le=64, description="HTTP worker processes sharing the listener.")
    max_body_bytes: int = Field(
        32 * 1024 * 1024,
        ge=1024,
        le=48 * 1024 * 1024,
        description="Largest request body, enforced while reading (Anthropic's own request limit: images and "
        "documents travel inside the body).",
    )
    max_large_bodies_bytes: int = Field(
        256 * 1024 * 1024,
        ge=1024 * 1024,
        description="Bytes of bodies over 1 MiB one process holds at once, read or in flight; past it, 503.",
    )
    request_timeout_s: float = Field(
        600.0, gt=0, description="Deadline of one Generate call, streams included."
    )
    control_timeout_s: float = Field(
        5.0, gt=0, description="Deadline of ListModels and RecordFeedback calls."
    )
    models_cache_s: float = Field(5.0, ge=0, description="How long a ListModels answer is reused.")
    ws_max_concurrent: int = Field(16, ge=1, description="Requests in flight on one WebSocket.")
    ws_max_message_bytes: int = Field(1024 * 1024, ge=1024, description="Largest WebSocket message accepted.")
    keep_alive_s: float = Field(
        75.0, gt=0, description="Idle HTTP keep-alive; above typical balancer idle timeouts."
    )
    drain_refuse_s: float = Field(
        0.5,
        ge=0,
        description="At the end of a drain, how long new requests get 503 before the listener closes.",
    )
    adapters_reconnect_max_s: float = Field(
        0.25, gt=0, description="Longest pause between attempts to reach the adapters (restarts found fast)."
    )
    max_head_bytes: int = Field(
        16 * 1024, ge=1024, description="Largest request line plus headers; larger gets 431."
    )
    max_headers: int = Field(100, ge=8, description="Most request headers; more gets 431.")
    head_timeout_s: float = Field(
        10.0,
        gt=0,
        description="Deadline for a request's line and headers from its first byte (and for the "
        "first request from the connection's start); then 408 and close.",
    )
    body_timeout_s: float = Field(
        60.0,
        gt=0,
        description="Deadline for a request's body from the end of its head; then 408 and close (a client "
        "holding its body back would otherwise hold a request slot).",
    )
    max_connections: int = Field(
        4096, ge=1, description="Open connections per process (WebSockets included); beyond: 503 and close."
    )
    max_requests: int = Field(
        1024, ge=1, description="Requests in flight per process; beyond: 503 with Retry-After."
    )
    max_unauthenticated_per_ip: int = Field(
        256,
        ge=1,
        description="Connections per client address that have not yet sent credentials; beyond: 503, close.",
    )
    cache_copy_entries: int = Field(
        4096,
        ge=0,
        description="Exact-match cache replies each worker keeps a copy of (0: none, every hit "
        "goes to the adapters).",
    )
    cache_copy_bytes: int = Field(
        32 * 1024 * 1024, ge=0, description="Bytes of cache replies each worker keeps a copy of."
    )
    cache_copy_ttl_s: float = Field(
        10.0,
        ge=0,
        description="Longest a worker serves its copy of a cache entry (at most the entry's own TTL): "
        "how long a refresh made through another worker or replica may go unseen here.",
    )
    cache_report_batch: int = Field(
        256, ge=1, le=4096, description="Cache hits reported to the adapters in one ReportCacheHits call."
    )
    cache_report_interval_s: float = Field(
        0.05, gt=0, description="Longest a served cache hit waits before it is reported to the adapters."
    )
    cache_report_max_bytes: int = Field(
        8 * 1024 * 1024,
        ge=1024,
        description="Bytes of hits waiting to be reported; when full, hits are answered by the adapters.",
    )

    @property
    def edge_limits(self) -> EdgeLimits:
        """The HTTP edge's limits (edge.py)."""
        return EdgeLimits(
            max_head_bytes=self.max_head_bytes,
            max_headers=self.max_headers,
            head_timeout_s=self.head_timeout_s,
            body_timeout_s=self.body_timeout_s,
            max_connections=self.max_connections,
            max_requests=self.max_requests,
            max_unauthenticated_per_ip=self.max_unauthenticated_per_ip,
        )
