"""The AdaptersService servicer: Generate and Complete delegate to the pipeline, ListModels reads the policy."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Collection

from grpc import aio

from atp.adapters.v1 import adapters_pb2, adapters_pb2_grpc
from atp.router.v1 import router_pb2
from atp_adapters.pipeline import GeneratePipeline
from atp_adapters.policy_watch import PolicyHolder
from atp_adapters.targets import TargetTable
from atp_common.errors import InvalidArgument
from atp_common.replies import merged_reply


class AdaptersServicer(adapters_pb2_grpc.AdaptersServiceServicer):
    """Generate, Complete and ListModels."""

    def __init__(self, pipeline: GeneratePipeline, holder: PolicyHolder, targets: TargetTable) -> None:
        self._pipeline = pipeline
        self._holder = holder
        self._targets = targets
        self._models_cache: tuple[object, object, adapters_pb2.ListModelsResponse] | None = None

    async def Generate(
        self, request: adapters_pb2.GenerateRequest, context: aio.ServicerContext
    ) -> AsyncGenerator[adapters_pb2.GenerateResponse, None]:
        async with contextlib.aclosing(
            self._pipeline.generate(request, context.time_remaining(), context.send_initial_metadata)
        ) as responses:
            async for response in responses:
                yield response

    async def Complete(
        self, request: adapters_pb2.CompleteRequest, context: aio.ServicerContext
    ) -> adapters_pb2.CompleteResponse:
        inner = request.request
        if inner.stream:
            raise InvalidArgument(
                "Complete serves non-streamed requests; stream with Generate", param="stream"
            )
        headers: list[tuple[str, str]] = []

        async def keep(metadata: tuple[tuple[str, str], ...]) -> None:
            headers.extend(metadata)

        async with contextlib.aclosing(
            self._pipeline.generate(inner, context.time_remaining(), keep)
        ) as responses:
            reply = await collect_reply(responses)
        if headers:
            # Trailing metadata leaves with the status in the reply's one batch; initial metadata sent
            # on its own would cost the call another exchange.
            context.set_trailing_metadata(tuple(headers))
        return reply

    async def ListModels(
        self, request: adapters_pb2.ListModelsRequest, context: aio.ServicerContext
    ) -> adapters_pb2.ListModelsResponse:
        snapshot = self._holder.snapshot
        served = self._targets.current
        cached = self._models_cache
        if cached is not None and cached[0] is snapshot and cached[1] is served:
            return cached[2]
        response = list_models(snapshot, served)
        self._models_cache = (snapshot, served, response)
        return response


def list_models(
    snapshot: router_pb2.PolicySnapshot, served: Collection[str]
) -> adapters_pb2.ListModelsResponse:
    """The routes and the models this replica can serve, from one policy snapshot.

    A model the snapshot names but this replica has no provider for is left out; a route is listed when
    at least one candidate is served here, with the largest context window among them.
    """
    specs = {spec.name: spec for spec in snapshot.models if spec.name in served}
    response = adapters_pb2.ListModelsResponse()
    for route in snapshot.routes:
        windows = [specs[m].context_window for m in route.candidates if m in specs]
        if windows:
            response.models.add(id=route.name, provider="", kind="route", context_window=max(windows))
    for name, spec in specs.items():
        response.models.add(id=name, provider=spec.provider, kind="model", context_window=spec.context_window)
    return response


async def collect_reply(
    responses: AsyncIterator[adapters_pb2.GenerateResponse],
) -> adapters_pb2.CompleteResponse:
    """Generate's messages as Complete's one reply."""
    return adapters_pb2.CompleteResponse(response=await merged_reply(responses))
