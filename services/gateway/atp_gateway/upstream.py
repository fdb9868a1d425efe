"""The gateway's gRPC clients: the adapters (Generate, ListModels, cache hits, health) and the observer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TypeAlias

import grpc
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from atp.adapters.v1 import adapters_pb2, adapters_pb2_grpc
from atp.observer.v1 import observer_pb2, observer_pb2_grpc
from atp_common.replies import merged_reply
from atp_gateway.errors import error_from_rpc
from atp_gateway.multiplex import MuxCall, MuxSession

log = logging.getLogger("atp.gateway.upstream")

__all__ = ["AdaptersClient", "ObserverClient", "whole_reply"]

# Health polling: readiness follows the adapters within a second; while they are not serving, checks
# come faster so a starting suite becomes ready quickly.
_HEALTH_INTERVAL_S = 1.0
_HEALTH_RETRY_S = 0.1
# How long requests go without Multiplex, or Complete, after the adapters answered it with UNIMPLEMENTED.
_OLDER_RETRY_S = 60.0
_MODELS_CACHE_ENTRIES = 1024


AdaptersCall: TypeAlias = aio.UnaryUnaryCall | aio.UnaryStreamCall | MuxCall


async def whole_reply(call: AdaptersCall) -> adapters_pb2.GenerateResponse:
    """The reply of a non-streamed request's call: Complete's one message, or Generate's messages merged
    (deltas appended) as they are read to the end."""
    if isinstance(call, aio.UnaryUnaryCall):
        reply: adapters_pb2.CompleteResponse = await call
        return reply.response
    return await merged_reply(call)


class AdaptersClient:
    """Calls to the adapters over one long-lived channel, and whether the adapters say they are SERVING.

    Generate and Complete go over a Multiplex stream (`multiplex`, the default) rather than a call each:
    design notes, "One stream for the gateway's calls". With tracing on they are calls of their own, so
    each request gets its client and server spans.
    """

    def __init__(
        self,
        channel: aio.Channel,
        *,
        request_timeout_s: float,
        control_timeout_s: float,
        models_cache_s: float,
        multiplex: bool = True,
    ):
        self._channel = channel
        self._multiplex = multiplex
        self._mux: MuxSession | None = None
        self._mux_sessions: set[MuxSession] = set()
        # When the adapters answered Multiplex with UNIMPLEMENTED (an older replica): calls of their own
        # until then.
        self._mux_retry_at = 0.0
        self._stub = adapters_pb2_grpc.AdaptersServiceStub(channel)
        self._health = health_pb2_grpc.HealthStub(channel)
        self._request_timeout_s = request_timeout_s
        self._control_timeout_s = control_timeout_s
        self._models_cache_s = models_cache_s
        self._models: dict[tuple[str, str], tuple[float, list[adapters_pb2.ModelInfo]]] = {}
        self._models_lock = asyncio.Lock()
        self._watch_task: asyncio.Task[None] | None = None
        self.serving = False
        # When the adapters answered Complete with UNIMPLEMENTED (an older replica, mid rolling upgrade):
        # non-streamed requests go over Generate until then, and Complete is tried again after it.
        self._complete_retry_at = 0.0

    def generate(self, request: adapters_pb2.GenerateRequest) -> aio.UnaryStreamCall | MuxCall:
        """Start a Generate call; the caller reads it and cancels it when its client goes away."""
        session = self._session()
        if session is not None:
            return session.start(request, whole=False, timeout_s=self._request_timeout_s)
        return self._stub.Generate(request, timeout=self._request_timeout_s)

    def complete(self, request: adapters_pb2.GenerateRequest) -> AdaptersCall:
        """Start the call for a non-streamed request: Complete, or Generate while the adapters lack it
        (lacks_method); whole_reply reads either. The caller cancels it when its client goes away."""
        session = self._session()
        if session is not None:
            return session.start(request, whole=True, timeout_s=self._request_timeout_s)
        if self._complete_retry_at and time.monotonic() < self._complete_retry_at:
            return self.generate(request)
        return self._stub.Complete(
            adapters_pb2.CompleteRequest(request=request), timeout=self._request_timeout_s
        )

    def _session(self) -> MuxSession | None:
        """The Multiplex stream new calls go on (opened when there is none that takes calls); None when
        calls go on their own."""
        if not self._multiplex or (self._mux_retry_at and time.monotonic() < self._mux_retry_at):
            return None
        session = self._mux
        if session is None or not session.usable:
            # The streams still finishing their calls are kept until they end, to be closed with us.
            self._mux_sessions = {s for s in self._mux_sessions if not s.finished}
            session = self._mux = MuxSession(self._channel, self._session_done)
            self._mux_sessions.add(session)
        return session

    def _session_done(self, session: MuxSession) -> None:
        if self._mux is session:
            self._mux = None

    def lacks_method(self, exc: aio.AioRpcError, call: AdaptersCall) -> bool:
        """Whether `exc` says the adapters do not serve Multiplex or Complete (an older replica, mid rolling
        upgrade); if so, requests go without it for a minute. Such a call never started the request, so
        the caller sends it again (`generate` or `complete` choose what the adapters serve)."""
        if exc.code() != grpc.StatusCode.UNIMPLEMENTED:
            return False
        if isinstance(call, MuxCall):
            if not self._mux_retry_at or time.monotonic() >= self._mux_retry_at:
                log.warning(
                    "the adapters do not serve Multiplex (an older version?); calls of their own for 60 s"
                )
            self._mux_retry_at = time.monotonic() + _OLDER_RETRY_S
            return True
        if not isinstance(call, aio.UnaryUnaryCall):
            return False
        if not self._complete_retry_at or time.monotonic() >= self._complete_retry_at:
            log.warning("the adapters do not serve Complete (an older version?); using Generate for 60 s")
        self._complete_retry_at = time.monotonic() + _OLDER_RETRY_S
        return True

    def count_tokens(self, request: adapters_pb2.GenerateRequest) -> aio.UnaryUnaryCall:
        """Start a CountTokens call; the caller awaits it and cancels it when its client goes away."""
        return self._stub.CountTokens(
            adapters_pb2.CountTokensRequest(request=request), timeout=self._control_timeout_s
        )

    def embed(self, request: adapters_pb2.EmbedRequest) -> aio.UnaryUnaryCall:
        """Start an Embed call; the caller awaits it and cancels it when its client goes away."""
        return self._stub.Embed(request, timeout=self._request_timeout_s)

    async def report_cache_hits(
        self, request: adapters_pb2.ReportCacheHitsRequest
    ) -> adapters_pb2.ReportCacheHitsResponse:
        """Report hits this worker answered from its copy of the cache (AioRpcError on failure)."""
        reply: adapters_pb2.ReportCacheHitsResponse = await self._stub.ReportCacheHits(
            request, timeout=self._control_timeout_s
        )
        return reply

    async def models(self, tenant: str, key_id: str) -> list[adapters_pb2.ModelInfo]:
        """The models and routes this tenant's key may use; reused for models_cache_s so a polling
        client costs nothing."""
        cache_key = (tenant, key_id)
        cached = self._models.get(cache_key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        # One refresh at a time: concurrent callers wait for it instead of each calling the adapters.
        async with self._models_lock:
            cached = self._models.get(cache_key)
            if cached is not None and cached[0] > time.monotonic():
                return cached[1]
            try:
                reply = await self._stub.ListModels(
                    adapters_pb2.ListModelsRequest(tenant=tenant, key_id=key_id),
                    timeout=self._control_timeout_s,
                )
            except aio.AioRpcError as exc:
                raise error_from_rpc(exc) from exc
            if len(self._models) >= _MODELS_CACHE_ENTRIES:
                # Bounded: one entry per key in use; a full cache starts over rather than grow.
                self._models.clear()
            models = list(reply.models)
            self._models[cache_key] = (time.monotonic() + self._models_cache_s, models)
            return models

    async def status(self) -> adapters_pb2.GetStatusResponse:
        """One adapters replica's observation backlog (queued, spooled); typed errors on failure."""
        try:
            reply: adapters_pb2.GetStatusResponse = await self._stub.GetStatus(
                adapters_pb2.GetStatusRequest(), timeout=self._control_timeout_s
            )
        except aio.AioRpcError as exc:
            raise error_from_rpc(exc) from exc
        return reply

    def start(self) -> None:
        """Start following the adapters' health (readiness depends on it)."""
        if self._watch_task is None:
            self._watch_task = asyncio.create_task(self._watch_health(), name="adapters-health")

    async def close(self) -> None:
        """Stop the health watch (the channel's owner closes the channel)."""
        task, self._watch_task = self._watch_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.serving = False
        sessions, self._mux_sessions, self._mux = self._mux_sessions, set(), None
        await asyncio.gather(*(session.close() for session in sessions))

    async def _watch_health(self) -> None:
        # Polls Check rather than following Watch: the server kit's error interceptor wraps the health
        # servicer's Watch (written with context.write) as an async generator and breaks it. Polling is
        # bounded per call and costs one small RPC a second.
        request = health_pb2.HealthCheckRequest(service="")
        while True:
            try:
                reply = await self._health.Check(request, timeout=self._control_timeout_s)
                self.serving = reply.status == health_pb2.HealthCheckResponse.SERVING
            except aio.AioRpcError as exc:
                if self.serving:
                    log.warning("adapters health check failed: %s", exc.code().name)
                self.serving = False
            await asyncio.sleep(_HEALTH_INTERVAL_S if self.serving else _HEALTH_RETRY_S)


class ObserverClient:
    """Feedback to the observer."""

    def __init__(self, channel: aio.Channel, *, control_timeout_s: float):
        self._stub = observer_pb2_grpc.ObserverServiceStub(channel)
        self._timeout_s = control_timeout_s

    async def record_feedback(
        self, *, decision_id: str, tenant: str, score: float, label: str, comment: str
    ) -> observer_pb2.RecordFeedbackResponse:
        """Store one feedback; typed errors (NotFound, PermissionDenied, Unavailable) on failure."""
        request = observer_pb2.RecordFeedbackRequest(
            decision_id=decision_id, tenant=tenant, score=score, label=label, comment=comment, source="api"
        )
        try:
            reply: observer_pb2.RecordFeedbackResponse = await self._stub.RecordFeedback(
                request, timeout=self._timeout_s
            )
            return reply
        except aio.AioRpcError as exc:
            raise error_from_rpc(exc) from exc
