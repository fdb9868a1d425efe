"""Against adapters older than Complete (a rolling upgrade), non-streamed requests go over Generate."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import grpc
import orjson
import pytest
import websockets

from atp.adapters.v1 import adapters_pb2
from atp.common.v1 import chat_pb2
from atp_common.server import RunningServer, ServiceRegistration, start_server
from atp_common.settings import ServiceSettings

ADAPTERS_SERVICE = adapters_pb2.DESCRIPTOR.services_by_name["AdaptersService"].full_name


class OldAdapters:
    """Generate and ListModels only, as adapters were before Complete; replies echo the last message."""

    def __init__(self) -> None:
        self.generated: list[adapters_pb2.GenerateRequest] = []

    async def Generate(self, request, context):
        self.generated.append(request)
        header = adapters_pb2.GenerateHeader(
            decision_id=f"dec-{len(self.generated)}",
            model="local-small",
            provider="local",
            created=int(time.time()),
        )
        text = "echo: " + request.messages[-1].content
        # Two messages, as a provider's reply may come: the gateway must merge them.
        yield adapters_pb2.GenerateResponse(
            header=header, deltas=[chat_pb2.Delta(role="assistant", content=text[:5])]
        )
        yield adapters_pb2.GenerateResponse(
            deltas=[chat_pb2.Delta(content=text[5:])],
            completion=adapters_pb2.GenerateCompletion(
                finish_reason=adapters_pb2.FINISH_REASON_STOP,
                usage=chat_pb2.Usage(prompt_tokens=3, completion_tokens=2),
            ),
        )

    async def ListModels(self, request, context):
        return adapters_pb2.ListModelsResponse(models=[adapters_pb2.ModelInfo(id="auto", kind="route")])


def _add_old_adapters(servicer: OldAdapters, server) -> None:
    handlers = {
        "Generate": grpc.unary_stream_rpc_method_handler(
            servicer.Generate,
            request_deserializer=adapters_pb2.GenerateRequest.FromString,
            response_serializer=adapters_pb2.GenerateResponse.SerializeToString,
        ),
        "ListModels": grpc.unary_unary_rpc_method_handler(
            servicer.ListModels,
            request_deserializer=adapters_pb2.ListModelsRequest.FromString,
            response_serializer=adapters_pb2.ListModelsResponse.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(ADAPTERS_SERVICE, handlers),))


@pytest.fixture
async def adapters() -> AsyncIterator[tuple[RunningServer, OldAdapters]]:
    """Replaces the conftest's adapters: a server without Complete (it answers UNIMPLEMENTED)."""
    servicer = OldAdapters()
    server = await start_server(
        ServiceSettings(port=0, drain_delay_s=0, grace_s=1),
        [ServiceRegistration(_add_old_adapters, servicer, ADAPTERS_SERVICE)],
    )
    yield server, servicer
    await server.stop_now()


async def test_non_streamed_requests_fall_back_to_generate(client, adapters) -> None:
    servicer = adapters[1]
    for n in (1, 2):
        reply = await client.post(
            "/v1/chat/completions",
            json={"model": "auto", "messages": [{"role": "user", "content": f"hi {n}"}]},
        )
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["choices"][0]["message"]["content"] == f"echo: hi {n}"
        assert body["choices"][0]["finish_reason"] == "stop" and body["usage"]["completion_tokens"] == 2
    assert [r.stream for r in servicer.generated] == [False, False]


async def test_websocket_non_streamed_requests_fall_back_to_generate(live, adapters, api_key) -> None:
    async with websockets.connect(
        f"ws://127.0.0.1:{live.port}/v1/ws",
        additional_headers={"authorization": f"Bearer {api_key}"},
        open_timeout=5,
    ) as ws:
        body = {"model": "auto", "messages": [{"role": "user", "content": "hello"}], "stream": False}
        await ws.send(orjson.dumps({"type": "request", "id": "r1", "body": body}))
        frame = orjson.loads(await ws.recv())
    assert frame["type"] == "done", frame
    assert frame["response"]["choices"][0]["message"]["content"] == "echo: hello"
