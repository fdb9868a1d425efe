"""The headers a reply carries from the adapters' answer: where it was served, and the tenant's limits."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from atp.adapters.v1 import adapters_pb2


def add_route_headers(reply_headers: list[tuple[bytes, bytes]], header: adapters_pb2.GenerateHeader) -> None:
    """Where the reply was served (decision, model, deployment, region) and what the cache did."""
    reply_headers.append((b"x-atp-decision-id", header.decision_id.encode()))
    reply_headers.append((b"x-atp-model", header.model.encode()))
    if header.deployment:
        reply_headers.append((b"x-atp-deployment", header.deployment.encode()))
    if header.region:
        reply_headers.append((b"x-atp-region", header.region.encode()))
    if header.cache:
        reply_headers.append((b"x-atp-cache", header.cache.encode()))


def add_limit_headers(
    reply_headers: list[tuple[bytes, bytes]], values: Iterable[tuple[str, Any]] | None
) -> None:
    for key, value in values or ():
        if key.startswith("x-ratelimit-"):
            reply_headers.append((key.encode(), value.encode() if isinstance(value, str) else value))
