"""RouterService: WatchPolicy, Route and Explain."""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator

import grpc
from grpc import aio

from atp.observer.v1 import observer_pb2, observer_pb2_grpc
from atp.router.v1 import router_pb2, router_pb2_grpc
from atp_common.errors import InvalidArgument, NotFound, from_rpc_error
from atp_common.logs import decision_id_var
from atp_common.policy import compute_features
from atp_router import metrics
from atp_router.decisions import DecisionLog
from atp_router.publisher import SnapshotPublisher


class RouterServicer(router_pb2_grpc.RouterServiceServicer):
    """Decisions with the same kernel the adapters run, on the snapshot the router currently publishes."""

    def __init__(
        self,
        publisher: SnapshotPublisher,
        decisions: DecisionLog,
        *,
        observer: observer_pb2_grpc.ObserverServiceStub | None,
        observer_timeout_s: float,
        rng: random.Random,
    ) -> None:
        self._publisher = publisher
        self._decisions = decisions
        self._observer = observer
        self._observer_timeout_s = observer_timeout_s
        self._rng = rng

    async def WatchPolicy(
        self, request: router_pb2.WatchPolicyRequest, context: aio.ServicerContext
    ) -> AsyncIterator[router_pb2.WatchPolicyResponse]:
        async for snapshot in self._publisher.watch(request.known_version):
            yield router_pb2.WatchPolicyResponse(snapshot=snapshot)

    async def Route(
        self, request: router_pb2.RouteRequest, context: aio.ServicerContext
    ) -> router_pb2.RouteResponse:
        if request.HasField("features"):
            features = request.features
        elif request.messages:
            features = compute_features(request.messages, request.params, request.stream)
            encoder = self._publisher.compiled.semantic_encoder(request.model)
            if encoder is not None:
                features.vector.extend(encoder.encode(request.messages))
        else:
            raise InvalidArgument("Route needs messages or precomputed features", param="messages")
        decision = self._publisher.compiled.decide(request.model, request.tenant, features, self._rng)
        decision_id_var.set(decision.decision_id)
        self._decisions.add(decision, request.tenant, time.time_ns())
        metrics.decision(decision.candidates[0].model).inc()
        return router_pb2.RouteResponse(decision=decision)

    async def Explain(
        self, request: router_pb2.ExplainRequest, context: aio.ServicerContext
    ) -> router_pb2.ExplainResponse:
        if not request.decision_id:
            raise InvalidArgument("decision_id is required", param="decision_id")
        logged = self._decisions.get(request.decision_id)
        if logged is not None:
            response = router_pb2.ExplainResponse(
                decision=logged.decision, decided_by="router", tenant=logged.tenant
            )
            response.decided_at.FromNanoseconds(logged.decided_at_ns)
            return response
        if self._observer is None:
            raise NotFound(f"no decision {request.decision_id} in the router's log (no observer configured)")
        # Decisions the adapters made are stored with their observations.
        try:
            found = await self._observer.GetDecision(
                observer_pb2.GetDecisionRequest(decision_id=request.decision_id),
                timeout=self._observer_timeout_s,
            )
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc) from exc
        return router_pb2.ExplainResponse(
            decision=found.decision,
            decided_by=found.replica_id,
            decided_at=found.decided_at,
            tenant=found.tenant,
        )
