"""Exact-match cache entries shared by the adapters' cache and the gateway's copy: the key and the replay."""

from __future__ import annotations

import hashlib
import time

from atp.adapters.v1 import adapters_pb2

__all__ = ["HIT", "NOT_IN_KEY", "canonical_key", "canonical_request", "replay"]

# The x-atp-cache value of a reply served for an identical request.
HIT = "hit"
# Caller-side fields that do not change what the provider answers; everything else is in the key.
NOT_IN_KEY = ("request_id", "key_id", "end_user", "tags", "dialect", "stream", "include_usage", "cache")


def canonical_request(request: adapters_pb2.GenerateRequest) -> adapters_pb2.GenerateRequest:
    """A copy of `request` without the fields that do not change the answer."""
    canonical = adapters_pb2.GenerateRequest()
    canonical.CopyFrom(request)
    for name in NOT_IN_KEY:
        canonical.ClearField(name)
    return canonical


def canonical_key(request: adapters_pb2.GenerateRequest, tenant: str) -> str:
    """The tenant and every field that changes the answer (model or route, messages, parameters),
    serialized deterministically and hashed."""
    digest = hashlib.sha256(tenant.encode() + b"\0")
    digest.update(canonical_request(request).SerializeToString(deterministic=True))
    return digest.hexdigest()


def replay(
    stored: adapters_pb2.GenerateResponse,
    request: adapters_pb2.GenerateRequest,
    request_id: str,
    outcome: str = HIT,
) -> list[adapters_pb2.GenerateResponse]:
    """The stored reply as the messages of this request: its header (the original decision id, marked
    `hit`), its deltas and its completion, which cost nothing this time; a stream gets the completion in a
    message of its own, as from a provider. Only an exact hit keeps the entry's expiry (a copy of it may
    be kept until then); a semantic hit is not a copy of the entry it was served from."""
    header = adapters_pb2.GenerateHeader()
    header.CopyFrom(stored.header)
    header.request_id = request_id
    header.created = int(time.time())
    header.cache = outcome
    if outcome == HIT:
        header.cache_saved_cost_usd = stored.completion.cost_usd
    else:
        header.cache_expires_at_ms = 0
    completion = adapters_pb2.GenerateCompletion()
    completion.CopyFrom(stored.completion)
    completion.cost_usd = 0.0
    completion.latency_ms = completion.provider_ms = completion.time_to_first_token_ms = 0.0
    first = adapters_pb2.GenerateResponse(header=header, deltas=stored.deltas)
    if not request.stream:
        first.completion.CopyFrom(completion)
        return [first]
    return [first, adapters_pb2.GenerateResponse(completion=completion)]
