"""Media-sized bodies are taken (32 MiB by default), and a process holds at most its budget of large bodies at
once: while they are read and for their request's life; small bodies never touch the budget."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
import pytest

from atp_common.errors import Unavailable
from atp_gateway.app import create_app
from atp_gateway.asgi import LARGE_BODY_BYTES, BodyBudget, read_body
from atp_gateway.settings import GatewaySettings
from tests.support.gateway_fixtures import API_KEY

MIB = 1024 * 1024


def _receiver(total: int, part: int, seen: list[int], budget: BodyBudget) -> Any:
    """An ASGI receive that sends `total` bytes in parts and notes the budget's hold before each."""
    sent = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        seen.append(budget.held)
        size = min(part, total - sent)
        sent += size
        return {"type": "http.request", "body": b"x" * size, "more_body": sent < total}

    return receive


async def test_a_large_body_holds_its_size_while_read_and_gives_it_back() -> None:
    budget, seen = BodyBudget(8 * MIB), []
    body = await read_body(_receiver(3 * MIB, 64 * 1024, seen, budget), None, 32 * MIB, budget)
    assert len(body) == 3 * MIB
    assert max(seen) >= 2 * MIB and budget.held == 0


async def test_a_small_body_never_touches_the_budget() -> None:
    budget, seen = BodyBudget(MIB + 1), []
    body = await read_body(_receiver(LARGE_BODY_BYTES - 1, 64 * 1024, seen, budget), None, 32 * MIB, budget)
    assert len(body) == LARGE_BODY_BYTES - 1 and set(seen) == {0}


async def test_a_large_body_past_the_budget_is_told_to_come_back() -> None:
    budget = BodyBudget(2 * MIB)
    budget.held = MIB
    with pytest.raises(Unavailable) as caught:
        await read_body(_receiver(3 * MIB, 64 * 1024, [], budget), None, 32 * MIB, budget)
    assert caught.value.retry_after == 1.0
    assert budget.held == MIB  # what the refused body took is back


def _settings(adapters, observer, **extra: Any) -> GatewaySettings:
    return GatewaySettings(
        port=0,
        metrics_port=None,
        adapters_addr=adapters[0].address,
        observer_addr=observer[0].address,
        drain_delay_s=0.1,
        grace_s=5,
        log_json=False,
        **extra,
    )


def _chat(model: str, size: int) -> bytes:
    image = "data:image/png;base64," + "A" * size
    content = [{"type": "text", "text": "what is it?"}, {"type": "image_url", "image_url": {"url": image}}]
    return orjson.dumps({"model": model, "messages": [{"role": "user", "content": content}]})


async def test_a_photo_sized_body_is_served_and_its_request_holds_it_to_the_end(
    adapters, observer, config, wait_for
) -> None:
    app = create_app(_settings(adapters, observer, max_large_bodies_bytes=12 * MIB), config=config)
    headers = {"authorization": f"Bearer {API_KEY}", "content-type": "application/json"}
    async with app.router.lifespan_context(app):
        await wait_for(lambda: app.state.gateway.ready, what="gateway ready")
        gateway = app.state.gateway
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway", timeout=10) as http:
            # A 5 MiB image: refused at the old 1 MiB limit.
            response = await http.post(
                "/v1/chat/completions", content=_chat("auto", 5 * MIB), headers=headers
            )
            assert response.status_code == 200
            assert gateway.body_budget.held == 0
            held = asyncio.create_task(
                http.post("/v1/chat/completions", content=_chat("hang", 8 * MIB), headers=headers)
            )
            await asyncio.wait_for(adapters[1].hanging.wait(), 5)
            assert gateway.body_budget.held >= 8 * MIB
            refused = await http.post("/v1/chat/completions", content=_chat("auto", 5 * MIB), headers=headers)
            assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
            small = await http.post("/v1/chat/completions", content=_chat("auto", 1000), headers=headers)
            assert small.status_code == 200
            held.cancel()
            await asyncio.gather(held, return_exceptions=True)
        await wait_for(lambda: gateway.body_budget.held == 0, what="the held body given back")
