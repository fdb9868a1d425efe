"""CountTokens over real gRPC: counted by the first candidate that can, within the tenant's models, with no
admission, observation or provider call for candidates that cannot count."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from atp.adapters.v1 import adapters_pb2
from atp.common.v1 import chat_pb2
from atp_adapters.providers.local import count_prompt_tokens
from tests.support.fidelity_stack import Suite, running_stack

MESSAGES = [
    chat_pb2.ChatMessage(role="system", content="Answer in one word."),
    chat_pb2.ChatMessage(role="user", content="What colour is the sky on a clear day?"),
]


@pytest.fixture
async def suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Suite]:
    async with running_stack(tmp_path, monkeypatch) as stack:
        yield stack


def _count(model: str, tenant: str = "acme", request_id: str = "") -> adapters_pb2.CountTokensRequest:
    request = adapters_pb2.GenerateRequest(
        request_id=request_id, tenant=tenant, model=model, messages=MESSAGES
    )
    return adapters_pb2.CountTokensRequest(request=request)


async def test_the_local_provider_counts_as_its_replies_report(suite: Suite) -> None:
    reply = await suite.stub.CountTokens(_count("auto"), timeout=10)
    assert reply.input_tokens == count_prompt_tokens(MESSAGES) > 0
    assert (reply.model, reply.provider, reply.decision_id != "") == ("echo", "local", True)
    generated = await suite.stub.Complete(
        adapters_pb2.CompleteRequest(request=_count("auto").request), timeout=10
    )
    assert generated.response.completion.usage.prompt_tokens == reply.input_tokens


async def test_a_candidate_that_cannot_count_is_passed_over_and_named_when_none_can(suite: Suite) -> None:
    # az-gpt is served by Azure, whose count ATP does not call: refused naming it and why, nothing sent.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await suite.stub.CountTokens(_count("az-gpt"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "no candidate of 'az-gpt' can count tokens" in caught.value.details()
    assert "Azure" in caught.value.details()
    assert not suite.fake.requests


async def test_counts_keep_to_the_tenants_models_and_rate_but_are_not_observed(suite: Suite) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await suite.stub.CountTokens(_count("gpt", tenant="no-gpt"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # "metered" allows one request a minute: a count calls a provider with the platform's key, so it is
    # that request, and the next count or generation waits.
    await suite.stub.CountTokens(_count("auto", tenant="metered", request_id="count-0"), timeout=10)
    for call in (
        suite.stub.CountTokens(_count("auto", tenant="metered", request_id="count-1"), timeout=10),
        suite.stub.Complete(
            adapters_pb2.CompleteRequest(request=_count("auto", tenant="metered", request_id="gen").request),
            timeout=10,
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as limited:
            await call
        assert limited.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    later = _count("auto", request_id="gen-acme").request
    await suite.stub.Complete(adapters_pb2.CompleteRequest(request=later), timeout=10)
    await suite.observer.wait_for("gen-acme")
    assert not [o for o in suite.observer.observations.values() if o.request_id.startswith("count-")]


async def test_a_request_no_provider_could_serve_is_refused_before_any_count(suite: Suite) -> None:
    empty = adapters_pb2.CountTokensRequest(request=adapters_pb2.GenerateRequest(tenant="acme", model="auto"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await suite.stub.CountTokens(empty, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "messages" in caught.value.details()
