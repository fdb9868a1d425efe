"""Gateway fixtures: a fake adapters and a fake observer as real gRPC servers on port 0, and gateways."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import grpc
import httpx
import pytest

from atp.adapters.v1 import adapters_pb2, adapters_pb2_grpc
from atp.common.v1 import chat_pb2
from atp.observer.v1 import observer_pb2, observer_pb2_grpc
from atp_adapters.multiplex import MultiplexHub
from atp_common.config import AtpConfig, builtin_config
from atp_common.errors import NotFound, PermissionDenied, RateLimited, Unavailable
from atp_common.server import RunningServer, ServiceRegistration, start_server
from atp_common.settings import ServiceSettings
from atp_gateway.app import create_app
from atp_gateway.serve import GatewayServer
from atp_gateway.settings import GatewaySettings
from tests.fakes.adapters_contract import complete_from_generate

API_KEY = "sk-test-local-0123456789"
ADAPTERS_SERVICE = adapters_pb2.DESCRIPTOR.services_by_name["AdaptersService"].full_name
OBSERVER_SERVICE = observer_pb2.DESCRIPTOR.services_by_name["ObserverService"].full_name
MODELS = {
    "auto": "local-small",
    "local-small": "local-small",
    "local-large": "local-large",
    "metered": "local-small",
    "metered-legacy": "local-small",
    "metered-unary": "local-small",
}
# The x-ratelimit-* values the fake reports for the models `metered` and `metered-legacy`.
METERED = {"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "59"}


def echo_text(messages: list[chat_pb2.ChatMessage]) -> str:
    """What the fake replies: the last user message, echoed."""
    last = next((m.content for m in reversed(messages) if m.role == "user"), "")
    return "echo: " + last


def _pieces(text: str) -> list[str]:
    # Word-sized pieces, spaces kept, so concatenation gives the text back exactly.
    words = text.split(" ")
    return [w + " " for w in words[:-1]] + [words[-1]]


@dataclass
class FakeAdapters(adapters_pb2_grpc.AdaptersServiceServicer):
    """Follows the Generate contract: header in the first message, deltas coalesced (two per message),
    completion in the last; errors before output are statuses, after output a GenerateError.

    Models: auto / local-small / local-large echo; `tools` calls a tool; `midstream-error` and
    `midstream-abort` break after output; `hang` streams one delta then waits until cancelled;
    `drip` streams 12 deltas 50 ms apart; `bulk` streams 200 KiB; `limited` is rate limited; `boom` is a bug; else NotFound.
    Multiplex runs Generate's replies through the adapters' real MultiplexHub; with `multiplex` False it
    answers UNIMPLEMENTED, as adapters older than it do.
    """

    requests: list[adapters_pb2.GenerateRequest] = field(default_factory=list)
    embed_requests: list[adapters_pb2.EmbedRequest] = field(default_factory=list)
    list_models_requests: list[adapters_pb2.ListModelsRequest] = field(default_factory=list)
    list_models_calls: int = 0
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    hanging: asyncio.Event = field(default_factory=asyncio.Event)
    multiplex: bool = True
    multiplex_streams: int = 0

    def generate(self, request, time_remaining, keep):
        """The pipeline's entry point, for the hub: Generate without a call of its own."""
        return self.Generate(request, None)

    async def Multiplex(self, request_iterator, context):
        if not self.multiplex:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not found!")
        self.multiplex_streams += 1
        async for frame in MultiplexHub(self).serve(request_iterator, context):
            yield frame

    async def ListModels(self, request, context):
        self.list_models_calls += 1
        self.list_models_requests.append(request)
        return adapters_pb2.ListModelsResponse(
            models=[
                adapters_pb2.ModelInfo(id="auto", kind="route"),
                adapters_pb2.ModelInfo(
                    id="local-small", provider="local", kind="model", context_window=32768
                ),
            ]
        )

    async def Embed(self, request, context):
        """One vector per input: [index, input length, 0.5]; `embed-short` returns one vector too few;
        `embed-hang` waits until cancelled."""
        self.embed_requests.append(request)
        if request.model == "embed-hang":
            self.hanging.set()
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
        if request.model not in ("embed", "embed-short"):
            raise NotFound(f"unknown model or route {request.model!r}")
        vectors = [
            adapters_pb2.Embedding(
                values=[float(i), float(len(x.text) if x.HasField("text") else len(x.tokens.ids)), 0.5]
            )
            for i, x in enumerate(request.inputs)
        ]
        if request.model == "embed-short":
            vectors = vectors[:-1]
        context.set_trailing_metadata((("x-ratelimit-remaining-requests", "9"),))
        return adapters_pb2.EmbedResponse(
            header=adapters_pb2.GenerateHeader(decision_id="dec-e", model="embed-1", provider="local"),
            embeddings=vectors,
            usage=chat_pb2.Usage(prompt_tokens=len(request.inputs) * 2),
        )

    async def CountTokens(self, request, context):
        """A word count of the messages for the echo models; NotFound else."""
        model = request.request.model
        if model not in MODELS:
            raise NotFound(f"unknown model or route {model!r}")
        words = sum(len(m.content.split()) for m in request.request.messages)
        return adapters_pb2.CountTokensResponse(
            input_tokens=words, model=MODELS[model], provider="local", decision_id="dec-count"
        )

    def _header(self, request, model: str) -> adapters_pb2.GenerateHeader:
        return adapters_pb2.GenerateHeader(
            decision_id=f"dec-{len(self.requests)}",
            model=model,
            provider="local",
            route="auto" if request.model == "auto" else "",
            request_id=request.request_id,
            created=int(time.time()),
        )

    async def Complete(self, request, context):
        if request.request.model == "metered-legacy":
            # Older adapters: a unary call's values in its trailing metadata.
            context.set_trailing_metadata(tuple(METERED.items()))
            request.request.model = "metered-unary"
        return await complete_from_generate(self.Generate(request.request, context))

    async def Generate(self, request, context):
        self.requests.append(request)
        model = request.model
        if model == "limited":
            raise RateLimited("tenant over its limit", retry_after=2.2)
        if model == "forbidden":
            raise PermissionDenied("model not allowed for this tenant", param="model")
        if model == "down":
            raise Unavailable("every candidate failed before the first token")
        if model == "boom":
            raise RuntimeError("secret internals: password=hunter2")
        usage = chat_pb2.Usage(prompt_tokens=7, completion_tokens=5)
        if model == "tools":
            header = self._header(request, "local-small")
            fragments = [
                chat_pb2.ToolCallDelta(index=0, id="call_1", type="function", function_name="get_weather"),
                chat_pb2.ToolCallDelta(index=0, arguments='{"city":'),
                chat_pb2.ToolCallDelta(index=0, arguments='"Paris"}'),
            ]
            yield adapters_pb2.GenerateResponse(
                header=header, deltas=[chat_pb2.Delta(tool_calls=fragments[:2])]
            )
            yield adapters_pb2.GenerateResponse(
                deltas=[chat_pb2.Delta(tool_calls=fragments[2:])],
                completion=adapters_pb2.GenerateCompletion(
                    finish_reason=adapters_pb2.FINISH_REASON_TOOL_CALLS, usage=usage
                ),
            )
            return
        if model in ("midstream-error", "midstream-abort"):
            yield adapters_pb2.GenerateResponse(
                header=self._header(request, "local-small"), deltas=[chat_pb2.Delta(content="partial ")]
            )
            if model == "midstream-abort":
                raise Unavailable("provider connection reset")
            yield adapters_pb2.GenerateResponse(
                error=adapters_pb2.GenerateError(
                    code="UNAVAILABLE", message="provider stream cut", type="upstream_error"
                )
            )
            return
        if model in ("hang", "drip"):
            yield adapters_pb2.GenerateResponse(
                header=self._header(request, "local-small"), deltas=[chat_pb2.Delta(content="tick ")]
            )
            try:
                if model == "hang":
                    self.hanging.set()
                    await asyncio.sleep(30)
                for _ in range(11):
                    await asyncio.sleep(0.05)
                    yield adapters_pb2.GenerateResponse(deltas=[chat_pb2.Delta(content="tick ")])
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
            yield adapters_pb2.GenerateResponse(
                completion=adapters_pb2.GenerateCompletion(
                    finish_reason=adapters_pb2.FINISH_REASON_STOP, usage=usage
                )
            )
            return
        if model == "bulk":
            # 200 KiB in 100 messages: past the Multiplex window, so credits must flow for it to finish.
            yield adapters_pb2.GenerateResponse(
                header=self._header(request, "local-small"), deltas=[chat_pb2.Delta(content="")]
            )
            for i in range(100):
                yield adapters_pb2.GenerateResponse(deltas=[chat_pb2.Delta(content=f"{i:04d}" * 512)])
            yield adapters_pb2.GenerateResponse(
                completion=adapters_pb2.GenerateCompletion(
                    finish_reason=adapters_pb2.FINISH_REASON_STOP, usage=usage
                )
            )
            return
        if model not in MODELS:
            raise NotFound(f"unknown model or route {model!r}")
        header = self._header(request, MODELS[model])
        if model == "metered":
            # Admission values as the contract carries them: in the first message's header.
            header.rate_limits.update(METERED)
        elif model == "metered-legacy":
            # As adapters older than GenerateHeader.rate_limits sent them: initial metadata.
            await context.send_initial_metadata(tuple(METERED.items()))
        deltas = [chat_pb2.Delta(content=p) for p in _pieces(echo_text(request.messages))]
        completion = adapters_pb2.GenerateCompletion(
            finish_reason=adapters_pb2.FINISH_REASON_STOP, usage=usage
        )
        if not request.stream:
            yield adapters_pb2.GenerateResponse(header=header, deltas=deltas, completion=completion)
            return
        batches = [deltas[i : i + 2] for i in range(0, len(deltas), 2)]
        yield adapters_pb2.GenerateResponse(header=header, deltas=batches[0])
        for batch in batches[1:]:
            yield adapters_pb2.GenerateResponse(deltas=batch)
        yield adapters_pb2.GenerateResponse(completion=completion)


@dataclass
class FakeObserver(observer_pb2_grpc.ObserverServiceServicer):
    """Stores feedback; decision ids starting with `missing` are unknown, `other` belong to another tenant."""

    feedback: list[observer_pb2.RecordFeedbackRequest] = field(default_factory=list)

    async def RecordFeedback(self, request, context):
        if request.decision_id.startswith("missing"):
            raise NotFound(f"no decision {request.decision_id!r}", param="decision_id")
        if request.decision_id.startswith("other"):
            raise PermissionDenied("decision of another tenant")
        self.feedback.append(request)
        return observer_pb2.RecordFeedbackResponse(feedback_id=f"fb-{len(self.feedback)}", joined=True)


@pytest.fixture
async def adapters() -> AsyncIterator[tuple[RunningServer, FakeAdapters]]:
    servicer = FakeAdapters()
    server = await start_server(
        ServiceSettings(port=0, drain_delay_s=0, grace_s=1),
        [
            ServiceRegistration(
                adapters_pb2_grpc.add_AdaptersServiceServicer_to_server, servicer, ADAPTERS_SERVICE
            )
        ],
    )
    yield server, servicer
    if not server.draining:
        await server.stop_now()


@pytest.fixture
async def observer() -> AsyncIterator[tuple[RunningServer, FakeObserver]]:
    servicer = FakeObserver()
    server = await start_server(
        ServiceSettings(port=0, drain_delay_s=0, grace_s=1),
        [
            ServiceRegistration(
                observer_pb2_grpc.add_ObserverServiceServicer_to_server, servicer, OBSERVER_SERVICE
            )
        ],
    )
    yield server, servicer
    await server.stop_now()


@pytest.fixture
def config() -> AtpConfig:
    return builtin_config(local_api_key=API_KEY)


@pytest.fixture
def settings(adapters, observer) -> GatewaySettings:
    return GatewaySettings(
        port=0,
        metrics_port=None,
        adapters_addr=adapters[0].address,
        observer_addr=observer[0].address,
        drain_delay_s=0.1,
        grace_s=5,
        max_body_bytes=64 * 1024,
        ws_max_concurrent=4,
        log_json=False,
    )


async def _wait_for(predicate: Callable[[], bool], timeout_s: float = 5.0, what: str = "condition") -> None:
    """Poll `predicate` until true, failing after `timeout_s` (never a fixed sleep)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@pytest.fixture
def wait_for():
    """The polling helper (tests import nothing from conftest: --import-mode=importlib)."""
    return _wait_for


@pytest.fixture
def api_key() -> str:
    return API_KEY


@pytest.fixture
async def client(settings, config) -> AsyncIterator[httpx.AsyncClient]:
    """The app through httpx's ASGITransport (in-process, no socket), started and ready."""
    app = create_app(settings, config=config)
    async with app.router.lifespan_context(app):
        await _wait_for(lambda: app.state.gateway.ready, what="gateway ready")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://gateway",
            headers={"authorization": f"Bearer {API_KEY}"},
            timeout=10,
        ) as http:
            yield http


@pytest.fixture
async def live(settings, config) -> AsyncIterator[GatewayServer]:
    """The app under a real uvicorn on a loopback port, ready."""
    server = GatewayServer(settings, create_app(settings, config=config))
    await server.start()
    await _wait_for(lambda: server.gateway.ready, what="gateway ready")
    yield server
    await server.stop_now()
