"""The AdaptersService servicer: Generate, Complete, Multiplex, CountTokens and Embed delegate to their
pipelines, ListModels reads the policy, GetStatus reports the observation backlog, ReportCacheHits records a
gateway's cache hits."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Collection

from grpc import aio

from atp.adapters.v1 import adapters_pb2, adapters_pb2_grpc
from atp.router.v1 import router_pb2
from atp_adapters.edge_hits import EdgeHits
from atp_adapters.embed import EmbedPipeline
from atp_adapters.multiplex import MultiplexHub, RateLimits, check_unstreamed
from atp_adapters.pipeline import GeneratePipeline
from atp_adapters.policy_watch import PolicyHolder
from atp_adapters.shipper import ObservationShipper
from atp_adapters.targets import TargetTable
from atp_common import capabilities
from atp_common.limits.directory import DirectoryFollower, KeyModels
from atp_common.replies import merged_reply

# Listings kept per snapshot; tenants come authenticated from the gateway, so this bound is never reached
# in practice, but the cache must not grow with whatever names a caller sends.
_MAX_CACHED_TENANTS = 1024


class AdaptersServicer(adapters_pb2_grpc.AdaptersServiceServicer):
    """Generate, Complete, Multiplex, Embed, ListModels, GetStatus and ReportCacheHits."""

    def __init__(
        self,
        pipeline: GeneratePipeline,
        holder: PolicyHolder,
        targets: TargetTable,
        embedder: EmbedPipeline,
        shipper: ObservationShipper,
        replica_id: str,
        directory: DirectoryFollower | None = None,
        edge_hits: EdgeHits | None = None,
    ) -> None:
        self._pipeline = pipeline
        self.hub = MultiplexHub(pipeline)
        self._edge_hits = edge_hits
        self._shipper = shipper
        self._replica_id = replica_id
        self._directory = directory
        self._embedder = embedder
        self._holder = holder
        self._targets = targets
        # Per snapshot and target table: the listing for each tenant asked about (tenants are few and
        # configured).
        self._models_cache: (
            tuple[router_pb2.PolicySnapshot, object, dict[str, adapters_pb2.ListModelsResponse]] | None
        ) = None

    async def Generate(
        self, request: adapters_pb2.GenerateRequest, context: aio.ServicerContext
    ) -> AsyncGenerator[adapters_pb2.GenerateResponse, None]:
        # The x-ratelimit-* values ride in the first message's header: initial metadata sent on its own
        # costs a stream an exchange of its own.
        limits = RateLimits()
        async with contextlib.aclosing(
            self._pipeline.generate(request, context.time_remaining(), limits.keep)
        ) as responses:
            async for response in responses:
                if limits.values is not None:
                    limits.stamp(response)
                yield response

    async def Complete(
        self, request: adapters_pb2.CompleteRequest, context: aio.ServicerContext
    ) -> adapters_pb2.CompleteResponse:
        inner = request.request
        check_unstreamed(inner)
        limits = RateLimits()
        async with contextlib.aclosing(
            self._pipeline.generate(inner, context.time_remaining(), limits.keep)
        ) as responses:
            reply = await collect_reply(responses)
        if limits.values is not None:
            limits.stamp(reply.response)
        return reply

    async def Multiplex(
        self, request_iterator: AsyncIterator[adapters_pb2.MultiplexRequest], context: aio.ServicerContext
    ) -> AsyncGenerator[adapters_pb2.MultiplexResponse, None]:
        async for frame in self.hub.serve(request_iterator, context):
            yield frame

    async def CountTokens(
        self, request: adapters_pb2.CountTokensRequest, context: aio.ServicerContext
    ) -> adapters_pb2.CountTokensResponse:
        return await self._pipeline.counter.count(request.request, context.time_remaining())

    async def Embed(
        self, request: adapters_pb2.EmbedRequest, context: aio.ServicerContext
    ) -> adapters_pb2.EmbedResponse:
        # The x-ratelimit-* values leave as trailing metadata, with the reply (as Complete's do).
        return await self._embedder.embed(request, context.time_remaining(), context.set_trailing_metadata)

    async def ListModels(
        self, request: adapters_pb2.ListModelsRequest, context: aio.ServicerContext
    ) -> adapters_pb2.ListModelsResponse:
        snapshot = self._holder.snapshot
        served = self._targets.current
        if request.key_id and request.tenant and self._directory is not None:
            # A key with model lists of its own: its listing is built for it (the gateway caches it).
            lists = self._directory.directory.models_for(request.key_id)
            if lists is not None:
                return list_models(snapshot, served, request.tenant, lists)
        cached = self._models_cache
        if cached is None or cached[0] is not snapshot or cached[1] is not served:
            cached = self._models_cache = (snapshot, served, {})
        by_tenant = cached[2]
        response = by_tenant.get(request.tenant)
        if response is None:
            if len(by_tenant) >= _MAX_CACHED_TENANTS:
                by_tenant.clear()
            response = by_tenant[request.tenant] = list_models(snapshot, served, request.tenant)
        return response

    async def GetStatus(
        self, request: adapters_pb2.GetStatusRequest, context: aio.ServicerContext
    ) -> adapters_pb2.GetStatusResponse:
        queued, spool_bytes = self._shipper.backlog
        return adapters_pb2.GetStatusResponse(
            replica_id=self._replica_id, queued_observations=queued, spool_bytes=spool_bytes
        )

    async def ReportCacheHits(
        self, request: adapters_pb2.ReportCacheHitsRequest, context: aio.ServicerContext
    ) -> adapters_pb2.ReportCacheHitsResponse:
        recorded = self._edge_hits.record(request.hits) if self._edge_hits is not None else 0
        return adapters_pb2.ReportCacheHitsResponse(recorded=recorded)


def list_models(
    snapshot: router_pb2.PolicySnapshot,
    served: Collection[str],
    tenant: str = "",
    key_lists: KeyModels | None = None,
) -> adapters_pb2.ListModelsResponse:
    """The routes and the models this replica can serve, from one policy snapshot, with capabilities.

    A model the snapshot names but this replica has no provider for is left out, and so is one that
    `tenant`'s allowed_models / denied_models exclude (empty tenant: no restriction), or its key's
    `key_lists`; a route is listed
    when at least one of its candidates is left, with the largest context window among them and the
    union of their capabilities.
    """
    allowed: frozenset[str] | None = None
    denied: frozenset[str] = frozenset()
    for policy in snapshot.tenants:
        if tenant and policy.tenant == tenant:
            allowed = frozenset(policy.allowed_models) or None
            denied = frozenset(policy.denied_models)
    key_allowed, key_denied = (key_lists.allowed, key_lists.denied) if key_lists else (None, frozenset())
    specs = {
        spec.name: spec
        for spec in snapshot.models
        if spec.name in served
        and (allowed is None or spec.name in allowed)
        and spec.name not in denied
        and (key_allowed is None or spec.name in key_allowed)
        and spec.name not in key_denied
    }
    response = adapters_pb2.ListModelsResponse()
    for route in snapshot.routes:
        members = [specs[m] for m in route.candidates if m in specs]
        if members:
            bits = 0
            for spec in members:
                bits |= spec.supported_features
            response.models.add(
                id=route.name,
                provider="",
                kind="route",
                # A route takes what its largest candidate takes; unknown (0) when any candidate's is.
                context_window=0
                if any(not spec.context_window for spec in members)
                else max(spec.context_window for spec in members),
                capabilities=_capabilities(bits),
            )
    for name, spec in specs.items():
        response.models.add(
            id=name,
            provider=spec.provider,
            kind="model",
            context_window=spec.context_window,
            capabilities=_capabilities(spec.supported_features),
        )
    return response


def _capabilities(bits: int) -> list[str]:
    """The configuration capabilities (`tools`, `vision`, `embeddings`, ...) behind a feature bit set."""
    names = dict.fromkeys(
        f.model_capability for f in capabilities.FEATURES if bits & f.bit and f.model_capability is not None
    )
    if bits & capabilities.BY_NAME["chat"].bit:
        names["chat"] = None
    return list(names)


async def collect_reply(
    responses: AsyncIterator[adapters_pb2.GenerateResponse],
) -> adapters_pb2.CompleteResponse:
    """Generate's messages as Complete's one reply."""
    return adapters_pb2.CompleteResponse(response=await merged_reply(responses))
