"""The gateway's control-plane clients for the admin API: router (AdminService, Explain) and observer queries."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from grpc import aio

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
