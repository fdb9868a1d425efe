"""Client channels between services: one long-lived channel per peer, with deadlines left to each call."""

from __future__ import annotations

from pathlib import Path

import grpc
from grpc import aio

from atp_common.server import GRPC_OPTIONS
from atp_common.settings import ServiceSettings


def open_channel(
    target: str, settings: ServiceSettings | None = None, *, reconnect_max_s: float | None = None
) -> aio.Channel:
    """A channel to `target` (host:port), secured with the service's TLS files when it has them.

    `reconnect_max_s` caps the pause between connection attempts while the peer is away (gRPC's backoff
    otherwise grows to GRPC_OPTIONS' maximum), for a peer whose return must be noticed at once."""
    options = GRPC_OPTIONS
    if reconnect_max_s is not None:
        pause_ms = max(int(reconnect_max_s * 1000), 1)
        replaced = ("grpc.initial_reconnect_backoff_ms", "grpc.max_reconnect_backoff_ms")
        options = (
            *(o for o in GRPC_OPTIONS if o[0] not in replaced),
            ("grpc.initial_reconnect_backoff_ms", pause_ms),
            ("grpc.max_reconnect_backoff_ms", pause_ms),
        )
    interceptors = None
    if settings is not None and (settings.tracing or settings.otlp_endpoint):
        from atp_common.telemetry import client_interceptors

        interceptors = client_interceptors()
    if settings is not None and (settings.tls_ca or settings.tls_cert):
        # With TLS settings every peer is dialled over TLS: the CA verifies the peer (the system's roots
        # without one), and our certificate, when we have one, answers the peer's mTLS challenge.
        ca = Path(settings.tls_ca).read_bytes() if settings.tls_ca else None
        cert = Path(settings.tls_cert).read_bytes() if settings.tls_cert else None
        key = Path(settings.tls_key).read_bytes() if settings.tls_key else None
        credentials = grpc.ssl_channel_credentials(ca, key, cert)
        return aio.secure_channel(target, credentials, options=options, interceptors=interceptors)
    return aio.insecure_channel(target, options=options, interceptors=interceptors)
