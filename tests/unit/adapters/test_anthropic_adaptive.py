"""Models that take only adaptive thinking (`thinking: adaptive` in their configuration): every way of asking
to think reaches Anthropic as adaptive thinking with output_config.effort, checked by the fake."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import ValidationError

from atp.common.v1 import chat_pb2
from atp_adapters.providers import AnthropicProvider, ProviderRequest
from atp_common.config import HttpProvider, ModelConfig
from tests.fakes import FakeAnthropic, running_fake_anthropic
from tests.support.full_reply import collect_full

HI = [chat_pb2.ChatMessage(role="user", content="think")]
OMITTED = {"type": "adaptive", "display": "omitted"}


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnthropic]:
    async with running_fake_anthropic() as server:
        yield server


@pytest.fixture
async def provider(fake: FakeAnthropic) -> AsyncIterator[AnthropicProvider]:
    client = AnthropicProvider(HttpProvider(type="anthropic", base_url=fake.base_url), api_key="k")
    yield client
    await client.close()


@pytest.mark.parametrize(
    ("reasoning", "thinking", "effort"),
    [
        (chat_pb2.Reasoning(effort="high"), OMITTED, "high"),
        (chat_pb2.Reasoning(effort="minimal"), OMITTED, "low"),
        (
            chat_pb2.Reasoning(budget_tokens=8192, include_thoughts=True, display="summarized"),
            {"type": "adaptive", "display": "summarized"},
            "medium",
        ),
        # A Messages client's budget without a display: the model's default display, as Anthropic's.
        (chat_pb2.Reasoning(budget_tokens=8192, include_thoughts=True), {"type": "adaptive"}, "medium"),
        (chat_pb2.Reasoning(adaptive=True), {"type": "adaptive"}, None),
        (chat_pb2.Reasoning(adaptive=True, effort="xhigh", display="omitted"), OMITTED, "xhigh"),
        (chat_pb2.Reasoning(disabled=True), {"type": "disabled"}, None),
        (chat_pb2.Reasoning(effort="max"), None, "max"),
    ],
)
async def test_every_way_of_asking_to_think_becomes_adaptive(
    fake: FakeAnthropic,
    provider: AnthropicProvider,
    reasoning: chat_pb2.Reasoning,
    thinking: Any,
    effort: Any,
) -> None:
    params = chat_pb2.GenerationParams(reasoning=reasoning, max_tokens=4000)
    ask = ProviderRequest("claude-new", HI, params, stream=False, adaptive_thinking=True)
    await collect_full(provider.stream(ask))
    body = fake.requests[0].body
    assert body.get("thinking") == thinking and body["max_tokens"] == 4000
    assert (body.get("output_config") or {}).get("effort") == effort


async def test_a_budget_model_keeps_budgets(fake: FakeAnthropic, provider: AnthropicProvider) -> None:
    params = chat_pb2.GenerationParams(reasoning=chat_pb2.Reasoning(effort="high"), max_tokens=4000)
    await collect_full(provider.stream(ProviderRequest("claude-old", HI, params, stream=False)))
    body = fake.requests[0].body
    assert body["thinking"]["type"] == "enabled" and "output_config" not in body


def test_the_thinking_form_is_a_model_setting() -> None:
    assert ModelConfig(provider="anthropic", thinking="adaptive").thinking == "adaptive"
    assert ModelConfig(provider="anthropic").thinking == "budget"
    with pytest.raises(ValidationError):
        ModelConfig(provider="anthropic", thinking="sometimes")
