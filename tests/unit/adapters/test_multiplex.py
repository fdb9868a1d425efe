"""The Multiplex stream end to end: the gateway's MuxSession against the adapters' MultiplexHub over real gRPC."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc import aio

from atp.adapters.v1 import adapters_pb2, adapters_pb2_grpc
from atp.common.v1 import chat_pb2
from atp_adapters import multiplex as adapters_side
from atp_adapters.multiplex import MultiplexHub
from atp_common.errors import RateLimited
from atp_common.server import RunningServer, ServiceRegistration, start_server
from atp_common.settings import ServiceSettings
from atp_gateway import multiplex as gateway_side
from atp_gateway.errors import error_from_rpc
from atp_gateway.multiplex import MuxSession
from atp_gateway.upstream import AdaptersClient, whole_reply

ADAPTERS_SERVICE = adapters_pb2.DESCRIPTOR.services_by_name["AdaptersService"].full_name


class ScriptedPipeline:
    """The pipeline's entry point: model `count-N` streams N deltas; `hang` one delta, then waits;
    `limited` is refused before output; `big` replies with a large message; `slow` waits 50 ms first."""

    def __init__(self) -> None:
        self.produced = 0
        self.cancelled = asyncio.Event()
        self.started = asyncio.Event()
        self.timeouts: list[float | None] = []

    async def generate(self, request, time_remaining, keep):
        self.timeouts.append(time_remaining)
        self.started.set()
        model = request.model
        if model == "limited":
            raise RateLimited("tenant over its limit", retry_after=2.0)
        await keep((("x-ratelimit-remaining-requests", "7"),))
        header = adapters_pb2.GenerateHeader(decision_id="d", model=model, request_id=request.request_id)
        if model == "slow":
            await asyncio.sleep(0.05)
        if model == "big":
            yield adapters_pb2.GenerateResponse(header=header, deltas=[chat_pb2.Delta(content="x" * 5000)])
            return
        count = int(model.split("-")[1]) if model.startswith("count-") else 1
        yield adapters_pb2.GenerateResponse(header=header, deltas=[chat_pb2.Delta(content="0 ")])
        self.produced = 1
        if model == "hang":
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
        for i in range(1, count):
            yield adapters_pb2.GenerateResponse(deltas=[chat_pb2.Delta(content=f"{i} ")])
            self.produced += 1
        yield adapters_pb2.GenerateResponse(
            completion=adapters_pb2.GenerateCompletion(finish_reason=adapters_pb2.FINISH_REASON_STOP)
        )


class HubServicer(adapters_pb2_grpc.AdaptersServiceServicer):
    def __init__(self, pipeline: ScriptedPipeline) -> None:
        self.hub = MultiplexHub(pipeline)  # type: ignore[arg-type]

    async def Multiplex(self, request_iterator, context):
        async for frame in self.hub.serve(request_iterator, context):
            yield frame


@pytest.fixture
async def served() -> AsyncIterator[tuple[RunningServer, ScriptedPipeline, HubServicer]]:
    pipeline = ScriptedPipeline()
    servicer = HubServicer(pipeline)
    server = await start_server(
        ServiceSettings(port=0, drain_delay_s=0, grace_s=1),
        [
            ServiceRegistration(
                adapters_pb2_grpc.add_AdaptersServiceServicer_to_server, servicer, ADAPTERS_SERVICE
            )
        ],
    )
    yield server, pipeline, servicer
    if not server.draining:
        await server.stop_now()


@pytest.fixture
async def channel(served) -> AsyncIterator[aio.Channel]:
    async with aio.insecure_channel(served[0].address) as channel:
        yield channel


def _request(model: str, *, stream: bool = True) -> adapters_pb2.GenerateRequest:
    return adapters_pb2.GenerateRequest(request_id=f"r-{model}", model=model, stream=stream)


async def _messages(call) -> list[adapters_pb2.GenerateResponse]:
    out = []
    while (message := await call.read()) is not aio.EOF:
        out.append(message)
    return out


def _text(messages) -> str:
    return "".join(d.content for m in messages for d in m.deltas)


async def test_concurrent_calls_share_one_stream_and_get_their_own_replies(channel) -> None:
    ended: list[MuxSession] = []
    session = MuxSession(channel, ended.append)
    streams = [session.start(_request(f"count-{n}"), whole=False, timeout_s=10) for n in range(1, 40)]
    wholes = [session.start(_request("count-3", stream=False), whole=True, timeout_s=10) for _ in range(10)]
    replies = await asyncio.gather(*(_messages(c) for c in streams))
    for n, messages in zip(range(1, 40), replies, strict=True):
        assert _text(messages) == "".join(f"{i} " for i in range(n))
        assert messages[0].header.rate_limits["x-ratelimit-remaining-requests"] == "7"
        assert messages[-1].completion.finish_reason == adapters_pb2.FINISH_REASON_STOP
    for call in wholes:
        reply = await whole_reply(call)
        assert _text([reply]) == "0 1 2 " and reply.HasField("completion")
    assert session.usable and not ended
    await session.close()


async def test_errors_end_a_call_with_its_own_status_and_trailers(channel, served) -> None:
    session = MuxSession(channel, lambda s: None)
    limited = session.start(_request("limited"), whole=False, timeout_s=10)
    ok = session.start(_request("count-2"), whole=False, timeout_s=10)
    with pytest.raises(aio.AioRpcError) as raised:
        await limited.read()
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    error = error_from_rpc(raised.value, generating=True)
    assert isinstance(error, RateLimited) and error.retry_after == 2.0
    assert _text(await _messages(ok)) == "0 1 "
    # A stream-ful request sent for a whole reply is refused as Complete refuses it.
    wrong = session.start(_request("count-1", stream=True), whole=True, timeout_s=10)
    with pytest.raises(aio.AioRpcError) as raised:
        await whole_reply(wrong)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    await session.close()


async def test_cancel_stops_the_call_in_the_adapters_and_wakes_the_reader(channel, served) -> None:
    pipeline = served[1]
    session = MuxSession(channel, lambda s: None)
    call = session.start(_request("hang"), whole=False, timeout_s=10)
    assert _text([await call.read()]) == "0 "
    reader = asyncio.create_task(call.read())
    await asyncio.sleep(0.01)
    assert call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    await asyncio.wait_for(pipeline.cancelled.wait(), 5)
    assert not call.cancel()  # once ended, nothing left to cancel
    with pytest.raises(asyncio.CancelledError):
        await call.read()
    # The stream goes on serving.
    assert _text(await _messages(session.start(_request("count-2"), whole=False, timeout_s=10))) == "0 1 "
    await session.close()


async def test_a_deadline_ends_the_call_as_a_grpc_deadline_would(channel, served) -> None:
    pipeline = served[1]
    session = MuxSession(channel, lambda s: None)
    call = session.start(_request("hang"), whole=False, timeout_s=0.2)
    await call.read()
    with pytest.raises(aio.AioRpcError) as raised:
        await call.read()
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    await asyncio.wait_for(pipeline.cancelled.wait(), 5)
    assert pipeline.timeouts[-1] == pytest.approx(0.2)
    await session.close()


async def test_a_slow_reader_holds_the_producer_at_its_window(channel, served) -> None:
    pipeline = served[1]
    session = MuxSession(channel, lambda s: None, window_bytes=400)
    call = session.start(_request("count-200"), whole=False, timeout_s=10)
    first = await call.read()
    await asyncio.sleep(0.2)
    # Each message is about 10 bytes: the adapters stop near the window instead of producing all 200.
    held = pipeline.produced
    assert 20 <= held <= 60, held
    rest = await _messages(call)
    assert pipeline.produced == 200
    assert _text([first, *rest]) == "".join(f"{i} " for i in range(200))
    await session.close()


async def test_drain_sends_closing_serves_calls_in_flight_and_ends_the_stream(
    channel, served, wait_for
) -> None:
    servicer = served[2]
    closed: list[MuxSession] = []
    session = MuxSession(channel, closed.append)
    call = session.start(_request("hang"), whole=False, timeout_s=10)
    await call.read()
    servicer.hub.drain()
    await wait_for(lambda: closed == [session], what="closing")
    assert not session.usable and session.closing
    # A call sent before the caller saw `closing` is still served.
    late = session.start(_request("count-2"), whole=False, timeout_s=10)
    assert _text(await _messages(late)) == "0 1 "
    assert not session.finished
    call.cancel()
    await wait_for(lambda: session.finished, what="the stream's end")
    assert session.broken is not None  # the stream is over: nothing more goes on it
    # A stream opened during the drain is told at once.
    again = MuxSession(channel, closed.append)
    assert _text(await _messages(again.start(_request("count-1"), whole=False, timeout_s=10))) == "0 "
    await wait_for(lambda: again.finished, what="the second stream's end")
    assert closed[-1] is again


async def test_the_adapters_stopping_fails_the_calls_in_flight_as_unavailable(channel, served) -> None:
    server, pipeline, _ = served
    ended: list[MuxSession] = []
    session = MuxSession(channel, ended.append)
    call = session.start(_request("hang"), whole=False, timeout_s=10)
    await call.read()
    await server.stop_now()
    with pytest.raises(aio.AioRpcError) as raised:
        await call.read()
    assert raised.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
    assert ended == [session] and not session.usable
    await asyncio.wait_for(pipeline.cancelled.wait(), 5)
    await session.close()


async def test_messages_too_large_fail_their_call_only(channel, monkeypatch) -> None:
    monkeypatch.setattr(adapters_side, "MAX_ITEM_BYTES", 2000)
    monkeypatch.setattr(gateway_side, "MAX_REQUEST_BYTES", 2000)
    session = MuxSession(channel, lambda s: None)
    big_reply = session.start(_request("big"), whole=False, timeout_s=10)
    big_request = adapters_pb2.GenerateRequest(
        model="count-1", messages=[chat_pb2.ChatMessage(content="y" * 3000)]
    )
    too_big = session.start(big_request, whole=False, timeout_s=10)
    ok = session.start(_request("count-3", stream=False), whole=True, timeout_s=10)
    for call in (big_reply, too_big):
        with pytest.raises(aio.AioRpcError) as raised:
            await call.read()
        assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert _text([await whole_reply(ok)]) == "0 1 2 "
    await session.close()


async def test_batches_close_at_their_size_in_both_directions(channel, monkeypatch) -> None:
    monkeypatch.setattr(adapters_side, "FRAME_BYTES", 64)
    monkeypatch.setattr(gateway_side, "FRAME_BYTES", 64)
    session = MuxSession(channel, lambda s: None)
    calls = [session.start(_request(f"count-{n}"), whole=False, timeout_s=10) for n in range(1, 30)]
    for n, call in zip(range(1, 30), calls, strict=True):
        assert _text(await _messages(call)) == "".join(f"{i} " for i in range(n))
    await session.close()


async def test_the_adapters_refuse_an_id_in_use_and_ignore_unknown_ids(channel) -> None:
    stream = channel.stream_stream(
        gateway_side.METHOD,
        request_serializer=adapters_pb2.MultiplexRequest.SerializeToString,
        response_deserializer=adapters_pb2.MultiplexResponse.FromString,
    )()
    up = adapters_pb2.MultiplexRequest(cancels=[99], credits=[adapters_pb2.MultiplexCredit(id=98, bytes=10)])
    up.calls.add(id=1, request=_request("slow"))
    up.calls.add(id=1, request=_request("count-1"))
    await stream.write(up)
    ends: dict[int, int] = {}
    while len(ends) < 2:
        frame = await asyncio.wait_for(stream.read(), 5)
        for item in frame.items:
            if item.HasField("end"):
                ends[len(ends)] = item.end.code
    assert ends == {0: grpc.StatusCode.ALREADY_EXISTS.value[0], 1: 0}
    await stream.done_writing()
    assert await asyncio.wait_for(stream.read(), 5) is aio.EOF


async def test_the_client_falls_back_to_calls_of_their_own_without_multiplex() -> None:
    """Adapters whose servicer lacks Multiplex answer UNIMPLEMENTED; the client then uses Generate."""

    class Older(adapters_pb2_grpc.AdaptersServiceServicer):
        async def Generate(self, request, context):
            yield adapters_pb2.GenerateResponse(deltas=[chat_pb2.Delta(content="old")])

    server = await start_server(
        ServiceSettings(port=0, drain_delay_s=0, grace_s=1),
        [
            ServiceRegistration(
                adapters_pb2_grpc.add_AdaptersServiceServicer_to_server, Older(), ADAPTERS_SERVICE
            )
        ],
    )
    try:
        async with aio.insecure_channel(server.address) as channel:
            client = AdaptersClient(channel, request_timeout_s=5, control_timeout_s=5, models_cache_s=0)
            call = client.generate(_request("m"))
            with pytest.raises(aio.AioRpcError) as raised:
                await call.read()
            assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
            assert client.lacks_method(raised.value, call)
            call = client.generate(_request("m"))
            assert isinstance(call, aio.UnaryStreamCall)
            assert _text(await _messages(call)) == "old"
            await client.close()
    finally:
        await server.stop_now()


async def test_calls_past_the_streams_bound_are_refused_as_unavailable(channel, monkeypatch) -> None:
    monkeypatch.setattr(adapters_side, "MAX_CALLS", 2)
    session = MuxSession(channel, lambda s: None)
    held = [session.start(_request("hang"), whole=False, timeout_s=10) for _ in range(2)]
    for call in held:
        await call.read()
    refused = session.start(_request("count-1"), whole=False, timeout_s=10)
    with pytest.raises(aio.AioRpcError) as raised:
        await refused.read()
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert error_from_rpc(raised.value).mapping.http_status == 503
    held[0].cancel()
    after = session.start(_request("count-1"), whole=False, timeout_s=10)
    assert _text(await _messages(after)) == "0 "
    await session.close()


async def test_a_call_cancelled_in_its_own_batch_is_cancelled_once_started(channel, served) -> None:
    pipeline = served[1]
    stream = channel.stream_stream(
        gateway_side.METHOD,
        request_serializer=adapters_pb2.MultiplexRequest.SerializeToString,
        response_deserializer=adapters_pb2.MultiplexResponse.FromString,
    )()
    up = adapters_pb2.MultiplexRequest(cancels=[5])
    up.calls.add(id=5, request=_request("hang"))
    await stream.write(up)
    await stream.done_writing()
    # The cancelled call sends no end (nobody reads it); the stream ends as its last call has.
    frames = []
    while (frame := await asyncio.wait_for(stream.read(), 5)) is not aio.EOF:
        frames.append(frame)
    assert not any(item.HasField("end") for frame in frames for item in frame.items)
    # Cancelled before it ran: the pipeline never saw it.
    assert not pipeline.started.is_set()
