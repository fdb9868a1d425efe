"""Generate end to end: a real adapters server on port 0, real fake providers on loopback, a recording observer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc import aio

from atp.adapters.v1 import adapters_pb2
from atp.common.v1 import chat_pb2
from atp.observer.v1 import observer_pb2
from atp_common.errors import from_rpc_error
from tests.fakes import FakeReply, Faults
from tests.support.adapters_suite import Suite, generate, request, running_suite, text_of
from tests.support.ports import free_port


@pytest.fixture
async def suite(tmp_path: Path) -> AsyncIterator[Suite]:
    async with running_suite(tmp_path) as running:
        yield running


async def test_streamed_deltas_concatenate_to_the_non_streamed_text(suite: Suite):
    suite.primary.reply = FakeReply(text="The quick brown fox jumps over the lazy dog.")
    # Spaced events arrive in separate reads, so the reply comes in several messages.
    suite.primary.faults = Faults(chunk_delay_s=0.005)
    streamed = await generate(suite.stub, request(stream=True))
    whole = await generate(suite.stub, request(stream=False))

    assert len(streamed) > 2, "a streamed reply comes in several messages"
    assert text_of(streamed) == text_of(whole) == "The quick brown fox jumps over the lazy dog."
    assert streamed[0].HasField("header") and not any(r.HasField("header") for r in streamed[1:])
    assert streamed[-1].HasField("completion") and not any(r.HasField("completion") for r in streamed[:-1])
    header = streamed[0].header
    assert (header.model, header.provider, header.route) == ("m-a", "primary", "chain")
    assert header.decision_id and header.created > 0

    assert len(whole) == 1, "a non-streamed request yields exactly one message"
    only = whole[0]
    assert only.HasField("header") and only.HasField("completion")
    completion = only.completion
    assert completion.finish_reason == adapters_pb2.FINISH_REASON_STOP
    assert completion.usage.prompt_tokens == 11 and completion.usage.completion_tokens == 9
    assert completion.latency_ms >= completion.provider_ms > 0
    assert completion.time_to_first_token_ms > 0
    assert suite.primary.requests[-1].body["model"] == "upstream-a"


async def test_complete_gives_the_non_streamed_reply_in_one_unary_call(suite: Suite):
    suite.primary.reply = FakeReply(text="The quick brown fox jumps over the lazy dog.")
    (generated,) = await generate(suite.stub, request(stream=False))
    reply = await suite.stub.Complete(
        adapters_pb2.CompleteRequest(request=request(stream=False, request_id="complete-1")), timeout=10
    )
    completed = reply.response
    assert text_of([completed]) == text_of([generated]) == "The quick brown fox jumps over the lazy dog."
    assert (completed.header.model, completed.header.route) == ("m-a", "chain")
    assert completed.completion.finish_reason == adapters_pb2.FINISH_REASON_STOP
    assert completed.completion.usage == generated.completion.usage
    observation = await suite.observer.wait_for("complete-1")
    assert observation.status == observer_pb2.OBSERVATION_STATUS_OK
    assert observation.decision.decision_id == completed.header.decision_id

    # Complete is for non-streamed requests only; its errors are the same typed statuses as Generate's.
    with pytest.raises(aio.AioRpcError) as caught:
        await suite.stub.Complete(adapters_pb2.CompleteRequest(request=request(stream=True)), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert from_rpc_error(caught.value).param == "stream"
    with pytest.raises(aio.AioRpcError) as caught:
        await suite.stub.Complete(
            adapters_pb2.CompleteRequest(request=request("no-such-model", stream=False)), timeout=10
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_events_that_arrive_together_travel_in_one_message(suite: Suite):
    responses = await generate(suite.stub, request(stream=True))
    # The fake writes every event at once: one read, one message with header, all deltas and completion.
    assert len(responses) == 1
    assert responses[0].HasField("header") and responses[0].HasField("completion")
    assert text_of(responses) == FakeReply().text


async def test_local_route_with_the_default_route_and_observation(suite: Suite):
    req = request("", stream=True, text="ping pong", request_id="local-1")
    responses = await generate(suite.stub, req)
    assert text_of(responses) == "echo: ping pong"
    assert responses[0].header.route == "auto" and responses[0].header.model == "echo"
    observation = await suite.observer.wait_for("local-1")
    assert observation.status == observer_pb2.OBSERVATION_STATUS_OK
    assert observation.tenant == "acme" and observation.model == "echo" and observation.provider == "local"
    assert observation.decision.decision_id == responses[0].header.decision_id
    assert len(observation.prompt_hash) == 64
    assert "ping pong" in observation.prompt_text  # acme stores prompts
    assert (
        observation.replica_id
        and observation.finished_at.ToNanoseconds() >= observation.started_at.ToNanoseconds()
    )


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("status", [500, 429])
async def test_failover_before_the_first_token(suite: Suite, stream: bool, status: int):
    suite.primary.faults = Faults(status=status, retry_after="0" if status == 429 else None)
    suite.secondary.reply = FakeReply(text="served by the second candidate")
    req = request(stream=stream, request_id=f"fo-{status}-{stream}")
    responses = await generate(suite.stub, req)

    assert text_of(responses) == "served by the second candidate"
    assert responses[0].header.model == "m-b" and responses[0].header.provider == "secondary"
    assert responses[-1].HasField("completion")
    # The default max_retries of 2: three calls to the first candidate, then the second.
    assert len(suite.primary.requests) == 3
    observation = await suite.observer.wait_for(req.request_id)
    assert observation.status == observer_pb2.OBSERVATION_STATUS_OK
    assert observation.model == "m-b" and observation.attempts == 3


async def test_retry_then_success_on_the_same_candidate(suite: Suite):
    suite.primary.faults = Faults(status=429, retry_after="0", times=1)
    req = request(stream=True, request_id="retry-1")
    responses = await generate(suite.stub, req)
    assert responses[0].header.model == "m-a"
    assert text_of(responses) == FakeReply().text
    assert len(suite.primary.requests) == 2 and not suite.secondary.requests
    observation = await suite.observer.wait_for("retry-1")
    assert observation.attempts == 1 and observation.status == observer_pb2.OBSERVATION_STATUS_OK


async def test_circuit_opens_and_the_kernel_skips_the_model_until_a_probe_succeeds(tmp_path: Path):
    async with running_suite(tmp_path, max_retries=0, circuit_failures=3) as suite:
        suite.primary.faults = Faults(status=503)
        for _ in range(3):
            responses = await generate(suite.stub, request(stream=False))
            assert responses[0].header.model == "m-b"
        assert len(suite.primary.requests) == 3
        parts = suite.adapters.parts
        assert parts.exclusions.open_models == {"m-a"}

        # Open: the decision itself leaves m-a out, and the first candidate's provider sees nothing.
        req = request(stream=False, request_id="while-open")
        responses = await generate(suite.stub, req)
        assert responses[0].header.model == "m-b"
        assert len(suite.primary.requests) == 3
        observation = await suite.observer.wait_for("while-open")
        assert [c.model for c in observation.decision.candidates] == ["m-b"]
        assert observation.decision.filtered[0].model == "m-a"
        assert "circuit open" in observation.decision.filtered[0].reason
        assert observation.attempts == 0

        # The provider recovers; once the open time is up, one probe goes through and closes the circuit.
        suite.primary.faults = Faults()
        async with asyncio.timeout(5):
            while True:
                responses = await generate(suite.stub, request(stream=False))
                if responses[0].header.model == "m-a":
                    break
                await asyncio.sleep(0.05)
        assert parts.exclusions.open_models == frozenset()
        responses = await generate(suite.stub, request(stream=True))
        assert responses[0].header.model == "m-a"


async def test_a_failed_probe_reopens_the_circuit(tmp_path: Path):
    async with running_suite(tmp_path, max_retries=0, circuit_failures=2) as suite:
        suite.primary.faults = Faults(status=500)
        for _ in range(2):
            await generate(suite.stub, request(stream=False))
        first_until = suite.adapters.parts.exclusions.exclusions()[0].until.ToNanoseconds()
        async with asyncio.timeout(5):
            while len(suite.primary.requests) < 3:  # the probe
                await generate(suite.stub, request(stream=False))
                await asyncio.sleep(0.05)
        exclusions = suite.adapters.parts.exclusions.exclusions()
        assert [e.model for e in exclusions] == ["m-a"]
        assert exclusions[0].until.ToNanoseconds() > first_until


async def test_a_stream_cut_mid_way_ends_with_a_terminal_error_event(suite: Suite):
    suite.primary.faults = Faults(cut_after_chunks=4)
    req = request(stream=True, request_id="cut-1")
    responses = await generate(suite.stub, req)

    assert responses[0].header.model == "m-a"
    assert text_of(responses), "some output arrived before the cut"
    assert responses[-1].HasField("error"), "the stream ends with an explicit error, not silently"
    assert not any(r.HasField("completion") for r in responses)
    assert responses[-1].error.code == "UNAVAILABLE" and responses[-1].error.message
    assert not suite.secondary.requests, "no failover after output was sent"
    observation = await suite.observer.wait_for("cut-1")
    assert observation.status == observer_pb2.OBSERVATION_STATUS_PARTIAL
    assert observation.error_class


async def test_a_cut_before_the_first_token_fails_over(suite: Suite):
    # The first event carries only the role and no text: the client has seen nothing when the cut comes.
    suite.primary.faults = Faults(cut_after_chunks=1)
    responses = await generate(suite.stub, request(stream=True))
    assert responses[0].header.model == "m-b"
    assert responses[0].deltas[0].role == "assistant"
    assert text_of(responses) == FakeReply().text and responses[-1].HasField("completion")


async def test_cancellation_closes_the_upstream_and_records_cancelled(suite: Suite):
    suite.primary.faults = Faults(chunk_delay_s=0.3)
    req = request(stream=True, request_id="cancel-1")
    call = suite.stub.Generate(req, timeout=10)
    first = await call.read()
    assert first.header.model == "m-a"
    call.cancel()
    await suite.primary.wait_for_disconnects(1, within_s=3)
    observation = await suite.observer.wait_for("cancel-1")
    assert observation.status == observer_pb2.OBSERVATION_STATUS_CANCELLED


async def test_cost_is_usage_times_prices_including_cached_and_reasoning_tokens(suite: Suite):
    suite.primary.reply = FakeReply(
        prompt_tokens=1000, cached_tokens=400, completion_tokens=500, reasoning_tokens=200
    )
    # (1000-400)*3 + 400*0.3 + (500-200)*15 + 200*60, per million tokens
    expected = (600 * 3.0 + 400 * 0.3 + 300 * 15.0 + 200 * 60.0) / 1e6
    for stream in (True, False):
        req = request(stream=stream, request_id=f"cost-{stream}")
        responses = await generate(suite.stub, req)
        completion = responses[-1].completion
        usage = completion.usage
        assert (usage.prompt_tokens, usage.cached_prompt_tokens) == (1000, 400)
        assert (usage.completion_tokens, usage.reasoning_tokens) == (500, 200)
        assert not usage.estimated
        assert round(completion.cost_usd, 2) == round(expected, 2) == 0.02
        assert completion.cost_usd == pytest.approx(expected, abs=1e-12)
        observation = await suite.observer.wait_for(req.request_id)
        assert observation.cost_usd == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"messages": []}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"tenant": ""}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"model": "no-such-model"}, grpc.StatusCode.NOT_FOUND),
        ({"params": chat_pb2.GenerationParams(max_tokens=0)}, grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
async def test_bad_requests_get_typed_statuses(suite: Suite, fields: dict, code: grpc.StatusCode):
    req = request(stream=True)
    for name, value in fields.items():
        if name == "messages":
            del req.messages[:]
        elif name == "params":
            req.params.CopyFrom(value)
        else:
            setattr(req, name, value)
    with pytest.raises(aio.AioRpcError) as caught:
        await generate(suite.stub, req)
    assert caught.value.code() == code
    assert from_rpc_error(caught.value).message


async def test_all_candidates_failing_is_an_upstream_error_with_its_status(suite: Suite):
    suite.primary.faults = Faults(status=500)
    suite.secondary.faults = Faults(status=500)
    with pytest.raises(aio.AioRpcError) as caught:
        await generate(suite.stub, request(stream=True, request_id="all-fail"))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert type(from_rpc_error(caught.value)).__name__ == "UpstreamError"
    observation = await suite.observer.wait_for("all-fail")
    assert observation.status == observer_pb2.OBSERVATION_STATUS_ERROR
    assert observation.error_class == "UpstreamError" and observation.attempts == 6


async def test_list_models_names_routes_and_models(suite: Suite):
    reply = await suite.stub.ListModels(adapters_pb2.ListModelsRequest(), timeout=5)
    kinds = {m.id: (m.kind, m.provider, m.context_window) for m in reply.models}
    # m-b's window is not configured (0: routing does not filter by it), so the route's is unknown too.
    assert kinds["chain"] == ("route", "", 0) and kinds["m-b"][2] == 0
    assert kinds["auto"] == ("route", "", 4096)
    assert kinds["m-a"] == ("model", "primary", 100_000)
    assert kinds["echo"] == ("model", "local", 4096)
    assert set(kinds) == {"chain", "auto", "m-a", "m-b", "echo"}


async def test_status_reports_the_observations_not_yet_delivered(tmp_path: Path):
    # The observer is unreachable: the request's observation waits in the queue or the spool, and
    # GetStatus (the console's health page) says so.
    async with running_suite(tmp_path, observer_addr=f"127.0.0.1:{free_port()}") as suite:
        idle = await suite.stub.GetStatus(adapters_pb2.GetStatusRequest(), timeout=5)
        assert (idle.queued_observations, idle.spool_bytes) == (0, 0) and idle.replica_id
        await generate(suite.stub, request(stream=False))

        async def backlog() -> adapters_pb2.GetStatusResponse:
            async with asyncio.timeout(10):
                while True:
                    status = await suite.stub.GetStatus(adapters_pb2.GetStatusRequest(), timeout=5)
                    if status.queued_observations or status.spool_bytes:
                        return status
                    await asyncio.sleep(0.02)

        status = await backlog()
        assert status.replica_id == idle.replica_id
        assert status.queued_observations == 1 or status.spool_bytes > 0


async def test_metrics_count_requests_tokens_cost_and_circuits(suite: Suite):
    from prometheus_client import REGISTRY

    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before_ok = sample("atp_adapters_requests_total", route="chain", model="m-a", status="ok")
    before_tokens = sample(
        "atp_adapters_tokens_total", tenant="acme", route="chain", model="m-a", kind="prompt"
    )
    before_other = sample("atp_adapters_cost_usd_total", tenant="other", route="chain", model="m-a")
    await generate(suite.stub, request(stream=True))
    await generate(suite.stub, request(stream=False, tenant="unconfigured-tenant"))
    assert sample("atp_adapters_requests_total", route="chain", model="m-a", status="ok") == before_ok + 2
    assert sample("atp_adapters_tokens_total", tenant="acme", route="chain", model="m-a", kind="prompt") == (
        before_tokens + 11
    )
    # Tenants the configuration does not name share one label.
    assert sample("atp_adapters_cost_usd_total", tenant="other", route="chain", model="m-a") > before_other
    assert sample("atp_adapters_overhead_seconds_count", route="chain") > 0
    assert sample("atp_adapters_circuit_state", model="m-a") == 0
