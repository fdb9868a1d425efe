"""Cache hits a gateway answered from its copy of an entry, recorded as the adapters record their own hits."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence

from atp.adapters.v1 import adapters_pb2
from atp.common.v1 import chat_pb2
from atp_adapters import metrics, observations
from atp_adapters.policy_watch import PolicyHolder
from atp_adapters.recorder import Call, Recorder
from atp_adapters.response_cache import LOOKUPS
from atp_adapters.targets import TargetTable
from atp_adapters.tracing import DIRECT_ROUTE_LABEL
from atp_common.errors import AtpError, InvalidArgument
from atp_common.policy.features import compute_features

__all__ = ["MAX_HITS_PER_REPORT", "EdgeHits"]

log = logging.getLogger("atp.adapters.edge_hits")

# A gateway sends its hits in batches of a few hundred; a larger report is refused, not half-recorded.
MAX_HITS_PER_REPORT = 4096
# A gateway answers a hit in well under a second and reports it within its control deadline; a reported
# latency outside this (or not a number) is not the hit's and is recorded as 0.
_MAX_LATENCY_MS = 3_600_000.0
_GATEWAY_HIT = LOOKUPS.labels("gateway_hit")
_SKIPPED = LOOKUPS.labels("gateway_hit_skipped")


class EdgeHits:
    """Turns each reported hit into what an adapters-served hit leaves: the decision the request would get
    (counted), the request metrics, and an observation marked cache_hit (policy `cache`, provider `cache`,
    the stored reply's decision as cached_decision_id, no usage, the saved cost).

    The gateway answers a hit itself only for a principal without limits of any kind and a key without
    model lists, so there is nothing to admit or filter here: every check a hit passes in the adapters
    that the gateway does not make is one that cannot refuse it.
    """

    def __init__(
        self,
        holder: PolicyHolder,
        targets: TargetTable,
        recorder: Recorder,
        *,
        default_tenant: str,
        rng: random.Random | None = None,
    ) -> None:
        self._holder = holder
        self._targets = targets
        self._recorder = recorder
        self._default_tenant = default_tenant
        self._rng = rng or random.Random()

    def record(self, hits: Sequence[adapters_pb2.CacheHit]) -> int:
        """Record each hit; returns how many were (one that cannot be, e.g. its route is gone, is skipped
        and counted, never failing the others)."""
        if len(hits) > MAX_HITS_PER_REPORT:
            raise InvalidArgument(f"at most {MAX_HITS_PER_REPORT} hits per report", param="hits")
        recorded = 0
        for hit in hits:
            try:
                self._record(hit)
            except AtpError as exc:
                _SKIPPED.inc()
                log.warning("a gateway's cache hit was not recorded: %s", exc.message)
                continue
            _GATEWAY_HIT.inc()
            recorded += 1
        return recorded

    def _record(self, hit: adapters_pb2.CacheHit) -> None:
        request = hit.request
        tenant = request.tenant or self._default_tenant
        if not tenant:
            raise InvalidArgument("tenant must be set by the caller", param="tenant")
        features = compute_features(request.messages, request.params, request.stream)
        if request.regions:
            features.regions.extend(request.regions)
        decision = self._holder.policy.decide(request.model, tenant, features, self._rng)
        route_label = decision.route or DIRECT_ROUTE_LABEL
        metrics.DECISIONS.labels(route_label, decision.candidates[0].model).inc()
        call = Call()
        call.observation_id = hit.observation_id
        call.cache_hit = True
        call.cached_decision_id = hit.stored.decision_id
        saved = hit.saved_cost_usd
        # Chained comparisons are False for NaN: a saved cost that is not a price is recorded as none.
        call.saved_cost_usd = saved if 0.0 <= saved < float("inf") else 0.0
        call.target = self._targets.current.get(hit.stored.model)
        call.usage = chat_pb2.Usage()
        call.finish_reason = "stop"
        call.status = observations.OK
        # The recorder measures latency from a perf_counter start: the gateway's, moved to this clock. A
        # NaN or infinite one would fail the observation's timestamps (and with them the whole report,
        # which the gateway would then resend forever), so the numbers are checked, not trusted.
        latency_ms = hit.latency_ms
        latency_s = latency_ms / 1000.0 if 0.0 <= latency_ms <= _MAX_LATENCY_MS else 0.0
        now_ns = time.time_ns()
        started_ns = hit.started_at_unix_ns
        if not now_ns - _MAX_LATENCY_MS * 1e6 <= started_ns <= now_ns:
            started_ns = now_ns - int(latency_s * 1e9)
        started = time.perf_counter() - latency_s
        call.first_token_at = started + latency_s
        self._recorder.finish(
            request.messages,
            tenant,
            request.request_id,
            decision,
            route_label,
            call,
            started,
            started_ns / 1e9,
            key_id=request.key_id,
            end_user=request.end_user or request.params.user,
            tags=request.tags,
            dialect=request.dialect,
        )
