"""The gateway's control-plane clients for the admin API: router (AdminService, Explain) and observer queries."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from atp.observer.v1 import observer_pb2, observer_pb2_grpc
from atp.router.v1 import admin_pb2_grpc, router_pb2, router_pb2_grpc
from atp_gateway.errors import error_from_rpc

__all__ = ["ControlClient"]

T = TypeVar("T")


class ControlClient:
    """Unary calls with the control timeout; failures become typed AtpErrors."""

    def __init__(self, router: aio.Channel, observer: aio.Channel, *, timeout_s: float):
        self.admin = admin_pb2_grpc.AdminServiceStub(router)
        self._router = router_pb2_grpc.RouterServiceStub(router)
        self._observer = observer_pb2_grpc.ObserverServiceStub(observer)
        self._health = {
            "router": health_pb2_grpc.HealthStub(router),
            "observer": health_pb2_grpc.HealthStub(observer),
        }
        self._timeout_s = timeout_s

    async def call(self, method: Callable[..., Awaitable[T]], request: Any) -> T:
        """`method(request)` with the deadline; AtpError on failure."""
        try:
            return await method(request, timeout=self._timeout_s)
        except aio.AioRpcError as exc:
            raise error_from_rpc(exc) from exc

    async def explain(self, decision_id: str) -> router_pb2.ExplainResponse:
        return await self.call(self._router.Explain, router_pb2.ExplainRequest(decision_id=decision_id))

    async def query_usage(self, request: observer_pb2.QueryUsageRequest) -> observer_pb2.QueryUsageResponse:
        return await self.call(self._observer.QueryUsage, request)

    async def list_observations(
        self, request: observer_pb2.ListObservationsRequest
    ) -> observer_pb2.ListObservationsResponse:
        return await self.call(self._observer.ListObservations, request)

    async def list_feedback(
        self, request: observer_pb2.ListFeedbackRequest
    ) -> observer_pb2.ListFeedbackResponse:
        return await self.call(self._observer.ListFeedback, request)

    async def list_audit(self, request: observer_pb2.ListAuditRequest) -> observer_pb2.ListAuditResponse:
        return await self.call(self._observer.ListAudit, request)

    async def store_status(self) -> observer_pb2.GetStoreStatusResponse:
        return await self.call(self._observer.GetStoreStatus, observer_pb2.GetStoreStatusRequest())

    async def serving(self, service: str) -> str:
        """The gRPC health status of `router` or `observer` as seen from here, or why it is unknown."""
        try:
            reply = await self._health[service].Check(
                health_pb2.HealthCheckRequest(), timeout=self._timeout_s
            )
        except aio.AioRpcError as exc:
            return f"unreachable ({exc.code().name})"
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))

    async def policy_snapshot(self) -> router_pb2.PolicySnapshot:
        """The router's current policy snapshot: the first message of a WatchPolicy stream, which is then
        cancelled (a watcher that knows no version gets the current snapshot at once)."""
        call = self._router.WatchPolicy(
            router_pb2.WatchPolicyRequest(replica_id="gateway-console"), timeout=self._timeout_s
        )
        try:
            async for response in call:
                snapshot: router_pb2.PolicySnapshot = response.snapshot
                return snapshot
        except aio.AioRpcError as exc:
            raise error_from_rpc(exc) from exc
        finally:
            call.cancel()
        return router_pb2.PolicySnapshot()
