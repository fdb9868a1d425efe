"""Embed (routed, billed, observed; OpenAI, Azure and local) and ListModels per tenant, over real gRPC."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from atp.adapters.v1 import adapters_pb2
from atp_adapters.providers.local import EMBEDDING_DIMENSIONS
from tests.support.fidelity_stack import Suite, running_stack


@pytest.fixture
async def suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Suite]:
    async with running_stack(tmp_path, monkeypatch) as stack:
        yield stack


def _embed(model: str, *inputs: str | list[int], tenant: str = "acme", **fields) -> adapters_pb2.EmbedRequest:
    items = [
        adapters_pb2.EmbedInput(text=i) if isinstance(i, str) else adapters_pb2.EmbedInput(tokens={"ids": i})
        for i in inputs
    ]
    return adapters_pb2.EmbedRequest(
        request_id=f"emb-{model}", tenant=tenant, model=model, inputs=items, **fields
    )


async def test_openai_embeddings_in_input_order_with_usage_cost_and_an_observation(suite: Suite) -> None:
    suite.fake.embedding_usage = {"prompt_tokens": 1_000_000, "total_tokens": 1_000_000}
    request = _embed("emb", "alpha", "abc", dimensions=4, user="u-7", tags={"team": "search"})
    reply = await suite.stub.Embed(request, timeout=10)
    sent = suite.fake.requests[-1]
    assert sent.path == "/v1/embeddings" and sent.headers["Authorization"] == "Bearer sk-test"
    assert sent.body == {
        "model": "text-embedding-3-small",
        "input": ["alpha", "abc"],
        "encoding_format": "float",
        "dimensions": 4,
        "user": "u-7",
    }
    # The fake answers in reverse order; each vector starts with its input's index and length.
    assert [list(e.values) for e in reply.embeddings] == [[0.0, 5.0, 0.0, 0.0], [1.0, 3.0, 0.0, 0.0]]
    assert (reply.header.model, reply.header.provider, reply.header.route) == ("emb", "oa", "")
    assert reply.header.decision_id and reply.usage.prompt_tokens == 1_000_000 and not reply.usage.estimated
    tokens = await suite.stub.Embed(_embed("emb", [1, 2, 3], [4]), timeout=10)
    assert suite.fake.requests[-1].body["input"] == [[1, 2, 3], [4]]
    assert [list(e.values)[:2] for e in tokens.embeddings] == [[0.0, 3.0], [1.0, 1.0]]
    # Strings and token ids together: OpenAI takes one kind per request, so it is refused by name.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await suite.stub.Embed(_embed("emb", "alpha", [1]), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "'input'" in caught.value.details()
    assert reply.cost_usd == pytest.approx(0.02)
    assert reply.latency_ms >= reply.provider_ms > 0
    observation = await suite.observer.wait_for("emb-emb")
    assert observation.model == "emb" and observation.cost_usd == pytest.approx(0.02)
    assert observation.usage.prompt_tokens == 1_000_000 and "alpha" in observation.prompt_text
    assert (observation.end_user, dict(observation.tags), observation.dialect) == (
        "u-7",
        {"team": "search"},
        "embeddings",
    )


async def test_azure_embeddings_use_the_deployment_path_and_usage_is_estimated_when_missing(
    suite: Suite,
) -> None:
    reply = await suite.stub.Embed(_embed("az-emb", "one two"), timeout=10)
    sent = suite.fake.requests[-1]
    assert sent.path == "/openai/deployments/emb-dep/embeddings" and sent.query == {
        "api-version": "2025-01-01"
    }
    assert sent.headers["api-key"] == "az-key" and sent.body["input"] == ["one two"]
    assert len(reply.embeddings) == 1 and reply.usage.estimated and reply.usage.prompt_tokens > 0


async def test_a_route_of_embedding_models_fails_over_to_the_local_one(suite: Suite) -> None:
    suite.fake.faults.status = 503
    reply = await suite.stub.Embed(_embed("embed", "same", "same", "other"), timeout=10)
    assert reply.header.model == "echo-embed" and reply.header.route == "embed"
    vectors = [list(e.values) for e in reply.embeddings]
    assert len(vectors[0]) == EMBEDDING_DIMENSIONS and vectors[0] == vectors[1] != vectors[2]
    assert sum(v * v for v in vectors[0]) == pytest.approx(1.0)


async def test_chat_models_never_embed_and_embedding_models_never_chat(suite: Suite) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await suite.stub.Embed(_embed("gpt", "x"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "gpt: lacks embeddings" in caught.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await suite.stub.Embed(_embed("emb", "x", ""), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "input[1]" in caught.value.details()
    assert not suite.fake.requests


async def test_embed_honours_the_tenants_models(suite: Suite) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await suite.stub.Embed(_embed("az-emb", "x", tenant="narrow"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_embed_is_admitted_against_the_tenants_limits(suite: Suite) -> None:
    call = suite.stub.Embed(_embed("echo-embed", "x", tenant="metered"), timeout=10)
    await call
    trailing = dict(await call.trailing_metadata())
    assert trailing["x-ratelimit-limit-requests"] == "1" and trailing["x-ratelimit-remaining-requests"] == "0"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await suite.stub.Embed(_embed("echo-embed", "x", tenant="metered"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def _listing(suite: Suite, tenant: str = "") -> dict[str, adapters_pb2.ModelInfo]:
    reply = await suite.stub.ListModels(adapters_pb2.ListModelsRequest(tenant=tenant), timeout=10)
    return {m.id: m for m in reply.models}


async def test_list_models_shows_capabilities_and_only_what_the_tenant_may_use(suite: Suite) -> None:
    everything = await _listing(suite)
    assert set(everything) == {
        "auto",
        "mixed",
        "embed",
        "gpt",
        "az-gpt",
        "emb",
        "az-emb",
        "echo",
        "echo-embed",
    }
    assert set(everything["gpt"].capabilities) >= {"tools", "vision", "audio", "files", "reasoning", "chat"}
    assert list(everything["emb"].capabilities) == ["embeddings"]
    assert {"chat", "embeddings"} <= set(everything["mixed"].capabilities)
    assert everything["mixed"].kind == "route" and everything["gpt"].kind == "model"

    narrow = await _listing(suite, "narrow")
    assert set(narrow) == {"auto", "embed", "echo", "emb"}, "a route is listed when one candidate is allowed"
    no_gpt = await _listing(suite, "no-gpt")
    assert "gpt" not in no_gpt and "az-gpt" not in no_gpt and "mixed" in no_gpt
    assert "chat" not in no_gpt["mixed"].capabilities, "the route's capabilities are its allowed candidates'"
    assert set(await _listing(suite, "acme")) == set(everything)
