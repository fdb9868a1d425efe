"""Limits in Generate itself (what internal callers and every gateway transport pass through): admission
before the provider call, x-ratelimit-* in the initial metadata, settlement from the actual usage."""

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
from atp_common.config import AtpConfig
from atp_common.errors import BudgetExceeded, from_rpc_error


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
    "routes": {"auto": {"candidates": ["echo"]}},
    "tenants": {
        "metered": {"tokens_per_minute": 1000, "requests_per_minute": 100},
        "capped": {"daily_budget_usd": 0.05},
        "free": {},
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
    yield adapters_pb2_grpc.AdaptersServiceStub(channel), running.admission
    await channel.close()
    await running.stop_now()


def _request(
    tenant: str, model: str = "auto", text: str = "one two three", **fields
) -> adapters_pb2.GenerateRequest:
    return adapters_pb2.GenerateRequest(
        tenant=tenant, model=model, messages=[chat_pb2.ChatMessage(role="user", content=text)], **fields
    )


async def _run(stub, request) -> tuple[dict[str, str], list[adapters_pb2.GenerateResponse]]:
    call = stub.Generate(request, timeout=10)
    responses = [r async for r in call]
    return dict(await call.initial_metadata()), responses


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
    reserved = 1000 - int(dict(await call.initial_metadata())["x-ratelimit-remaining-tokens"])
    call.cancel()
    await admission.limiter.flush()
    metadata, _ = await _run(stub, _request("metered", model="slow-echo", text="a b c d e f g h"))
    # The provider may bill for what it generated before the cancel: the estimate stands as the spend.
    assert int(metadata["x-ratelimit-remaining-tokens"]) == 1000 - 2 * reserved


async def test_budget_refusal_is_typed_with_retry_after_before_any_provider_call(adapters) -> None:
    stub, _admission = adapters
    # Each request reserves (prompt + 50 output tokens) at $1000/Mtok: about $0.06 > $0.05.
    with pytest.raises(aio.AioRpcError) as refused:
        await _run(stub, _request("capped"))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    error = from_rpc_error(refused.value)
    assert isinstance(error, BudgetExceeded) and error.retry_after and error.retry_after > 0
    # A smaller request fits.
    _metadata, responses = await _run(
        stub, _request("capped", text="hi", params=chat_pb2.GenerationParams(max_tokens=5))
    )
    assert responses[-1].HasField("completion")
