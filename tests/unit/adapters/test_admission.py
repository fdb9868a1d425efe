"""Limits in Generate itself (what internal callers and every gateway transport pass through): admission
before the provider call, x-ratelimit-* in the initial metadata, settlement from the actual usage; a key's
own limits, named by the request's key_id, on top of its tenant's."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc import aio

from atp.adapters.v1 import adapters_pb2, adapters_pb2_grpc
from atp.common.v1 import chat_pb2
from atp_adapters.server import build_server
from atp_adapters.settings import AdaptersSettings
from atp_common.config import AtpConfig, hash_api_key
from atp_common.errors import BudgetExceeded, RateLimited, from_rpc_error
from atp_common.limits.directory import config_key_id

STRICT_KEY, TOKEN_KEY, PLAIN_KEY = "sk-keyed-strict-1", "sk-keyed-tokens-1", "sk-keyed-plain-01"


def _key_id(key: str) -> str:
    return config_key_id(hash_api_key(key).removeprefix("sha256:"))


def _free_address() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


CONFIG = {
    "providers": {"local": {"type": "local"}, "slow": {"type": "local", "tokens_per_second": 20}},
    "models": {
        "echo": {"provider": "local", "input_usd_per_mtok": 1000.0, "output_usd_per_mtok": 1000.0},
        "slow-echo": {"provider": "slow"},
    },
    "routes": {
        "auto": {"candidates": ["echo"]},
        "short": {"candidates": ["echo"], "max_reservation_tokens": 10},
    },
    "tenants": {
        "metered": {"tokens_per_minute": 1000, "requests_per_minute": 100},
        "capped": {"daily_budget_usd": 0.05},
        "free": {},
        "keyed": {
            "requests_per_minute": 5,
            "tokens_per_minute": 100_000,
            "api_keys": [
                {"hash": hash_api_key(STRICT_KEY), "requests_per_minute": 2},
                {"hash": hash_api_key(TOKEN_KEY), "tokens_per_minute": 1000},
                {"hash": hash_api_key(PLAIN_KEY)},
            ],
        },
    },
}


@pytest.fixture
async def adapters(tmp_path: Path) -> AsyncIterator[tuple]:
    running = await build_server(
        AdaptersSettings(
            port=0,
            metrics_port=None,
            router_addr=_free_address(),
            observer_addr=_free_address(),
            spool_dir=str(tmp_path / "spool"),
            directory_path=str(tmp_path / "tenants.json"),
            default_output_tokens=50,
            drain_delay_s=0,
            grace_s=1,
        ),
        config=AtpConfig.model_validate(CONFIG),
    )
    channel = aio.insecure_channel(running.address)
    yield adapters_pb2_grpc.AdaptersServiceStub(channel), running.parts.admission
    await channel.close()
    await running.stop_now()


def _request(
    tenant: str, model: str = "auto", text: str = "one two three", **fields
) -> adapters_pb2.GenerateRequest:
    return adapters_pb2.GenerateRequest(
        tenant=tenant, model=model, messages=[chat_pb2.ChatMessage(role="user", content=text)], **fields
    )


async def _run(stub, request) -> tuple[dict[str, str], list[adapters_pb2.GenerateResponse]]:
    """The x-ratelimit-* values of a Generate call (in its first header) and its messages."""
    call = stub.Generate(request, timeout=10)
    responses = [r async for r in call]
    # They ride in the header alone: no exchange of initial metadata of their own.
    assert not any(k.startswith("x-ratelimit-") for k, _ in await call.initial_metadata())
    assert all(not r.header.rate_limits for r in responses[1:])
    return dict(responses[0].header.rate_limits), responses


async def test_tokens_are_reserved_then_settled_to_the_actual_usage(adapters) -> None:
    stub, admission = adapters
    metadata, responses = await _run(stub, _request("metered", stream=True))
    usage = responses[-1].completion.usage
    reserved_first = 1000 - int(metadata["x-ratelimit-remaining-tokens"])
    assert metadata["x-ratelimit-limit-tokens"] == "1000"
    assert metadata["x-ratelimit-remaining-requests"] == "99"
    assert reserved_first >= 50  # the estimated prompt plus default_output_tokens
    await admission.limiter.flush()
    metadata, _ = await _run(stub, _request("metered"))
    reserved_second = reserved_first  # same prompt, same estimate
    actual_first = usage.prompt_tokens + usage.completion_tokens
    assert int(metadata["x-ratelimit-remaining-tokens"]) == 1000 - actual_first - reserved_second


async def test_complete_carries_the_values_in_its_reply_header(adapters) -> None:
    stub, _admission = adapters
    call = stub.Complete(adapters_pb2.CompleteRequest(request=_request("metered")), timeout=10)
    reply = await call
    assert reply.response.header.rate_limits["x-ratelimit-limit-tokens"] == "1000"
    assert not any(k.startswith("x-ratelimit-") for k, _ in await call.trailing_metadata())


async def test_a_tenant_without_limits_gets_no_ratelimit_metadata(adapters) -> None:
    stub, _admission = adapters
    metadata, responses = await _run(stub, _request("free"))
    assert responses[-1].HasField("completion")
    assert not any(k.startswith("x-ratelimit-") for k in metadata)


async def test_a_stream_cancelled_after_output_keeps_its_reservation(adapters) -> None:
    stub, admission = adapters
    call = stub.Generate(
        _request("metered", model="slow-echo", text="a b c d e f g h", stream=True), timeout=10
    )
    first = await call.read()
    assert first.HasField("header")
    reserved = 1000 - int(first.header.rate_limits["x-ratelimit-remaining-tokens"])
    call.cancel()
    await admission.limiter.flush()
    metadata, _ = await _run(stub, _request("metered", model="slow-echo", text="a b c d e f g h"))
    # The provider may bill for what it generated before the cancel: the estimate stands as the spend.
    assert int(metadata["x-ratelimit-remaining-tokens"]) == 1000 - 2 * reserved


async def test_a_reservation_larger_than_the_whole_budget_is_refused_saying_so(adapters) -> None:
    stub, _admission = adapters
    # Each request reserves (prompt + 50 output tokens) at $1000/Mtok: about $0.06 > the whole $0.05.
    with pytest.raises(aio.AioRpcError) as refused:
        await _run(stub, _request("capped"))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    error = from_rpc_error(refused.value)
    assert isinstance(error, BudgetExceeded) and error.param == "max_tokens"
    assert (
        "larger than your whole daily budget" in error.message and "max_reservation_tokens" in error.message
    )
    # Waiting would not help: no Retry-After.
    assert error.retry_after is None
    # A smaller request fits, and so does one on a route that caps the reservation.
    _metadata, responses = await _run(
        stub, _request("capped", text="hi", params=chat_pb2.GenerationParams(max_tokens=5))
    )
    assert responses[-1].HasField("completion")
    _metadata, responses = await _run(stub, _request("capped", model="short", text="hi"))
    assert responses[-1].HasField("completion")


async def test_budget_refusal_once_spent_is_typed_with_retry_after_before_any_provider_call(adapters) -> None:
    stub, _admission = adapters
    small = _request("capped", text="hi", params=chat_pb2.GenerationParams(max_tokens=5))
    for _ in range(10):
        try:
            await _run(stub, small)
        except aio.AioRpcError as exc:
            error = from_rpc_error(exc)
            assert isinstance(error, BudgetExceeded) and error.retry_after and error.retry_after > 0
            assert "spent or reserved" in error.message
            return
    raise AssertionError("the budget was never exhausted")


async def _outcome(stub, request) -> str:
    try:
        _metadata, responses = await _run(stub, request)
    except aio.AioRpcError as exc:
        error = from_rpc_error(exc)
        assert isinstance(error, RateLimited) and error.retry_after and error.retry_after > 0
        return error.message
    assert responses[-1].HasField("completion")
    return "ok"


async def test_a_key_gets_exactly_its_limit_beside_its_tenant_which_caps_the_sum(adapters) -> None:
    stub, _admission = adapters
    strict = [await _outcome(stub, _request("keyed", key_id=_key_id(STRICT_KEY))) for _ in range(4)]
    assert strict[:2] == ["ok", "ok"]
    assert all("requests per minute of API key " + _key_id(STRICT_KEY) in m for m in strict[2:])
    # Another key of the tenant is not held by the first key's limit, only by the tenant's five.
    plain = [await _outcome(stub, _request("keyed", key_id=_key_id(PLAIN_KEY))) for _ in range(4)]
    assert plain[:3] == ["ok", "ok", "ok"]
    assert "requests per minute" in plain[3] and "API key" not in plain[3]
    # A caller without a key id is held by the tenant's limits alone.
    assert "requests per minute" in await _outcome(stub, _request("keyed"))


async def test_key_tokens_are_reserved_then_settled_and_reported_as_the_tightest_limit(adapters) -> None:
    stub, admission = adapters
    request = _request("keyed", key_id=_key_id(TOKEN_KEY), params=chat_pb2.GenerationParams(max_tokens=400))
    metadata, responses = await _run(stub, request)
    assert metadata["x-ratelimit-limit-tokens"] == "1000"  # the key's limit, tighter than the tenant's
    assert metadata["x-ratelimit-limit-requests"] == "5"  # the tenant's: the key limits no requests
    reserved = 1000 - int(metadata["x-ratelimit-remaining-tokens"])
    assert reserved >= 400
    usage = responses[-1].completion.usage
    actual = usage.prompt_tokens + usage.completion_tokens
    assert actual < reserved
    await admission.limiter.flush()
    # Settled: the first request counts its actual usage only.
    metadata, _ = await _run(stub, request)
    assert int(metadata["x-ratelimit-remaining-tokens"]) == 1000 - actual - reserved
    await admission.limiter.flush()
    # An estimate above what the key has left is refused, though the tenant has plenty.
    bigger = _request("keyed", key_id=_key_id(TOKEN_KEY), params=chat_pb2.GenerationParams(max_tokens=990))
    message = await _outcome(stub, bigger)
    assert "tokens per minute of API key " + _key_id(TOKEN_KEY) in message
    assert await _outcome(stub, _request("keyed", key_id=_key_id(PLAIN_KEY))) == "ok"
