"""Models whose sampling is narrower than their API's, through the real gateway and adapters. `sampling:
default` (OpenAI's reasoning models): a request that sets temperature or top_p other than 1, a penalty,
logprobs or logit_bias (or, with `stop_sequences: false`, a stop sequence) passes the model over for the
route's next candidate as sent; a request naming only
it gets a 400 naming the parameter; the default values reach it as sent. `sampling: temperature_or_top_p`
(Claude's newer models): both set pass it over the same way."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from anthropic.types.shared import ErrorResponse

from atp_common.config import LOCAL_TENANT, AtpConfig, hash_api_key
from tests.fakes import FakeAnthropic, FakeOpenAI
from tests.support.sdk_models import strict
from tests.support.stack import adapters_and_gateway

ANTHROPIC_KEY_ENV = "ATP_TEST_SAMPLING_ANTHROPIC_KEY"

HI = [{"role": "user", "content": "Say hi."}]


def _config(fake: FakeOpenAI, claude: FakeAnthropic, api_key: str) -> AtpConfig:
    return AtpConfig.model_validate(
        {
            "providers": {
                "openai": {"type": "openai", "base_url": fake.base_url, "max_retries": 0},
                "anthropic": {
                    "type": "anthropic",
                    "base_url": claude.base_url,
                    "api_key": f"env:{ANTHROPIC_KEY_ENV}",
                    "max_retries": 0,
                },
            },
            "models": {
                "reasoner": {
                    "provider": "openai",
                    "provider_model": "o3-upstream",
                    "sampling": "default",
                    "stop_sequences": False,
                },
                "gpt": {"provider": "openai", "provider_model": "gpt-upstream"},
                # The same kind of model, not marked: it is called and refuses.
                "unmarked": {"provider": "openai", "provider_model": "gpt-5-upstream"},
                "claude-new": {
                    "provider": "anthropic",
                    "provider_model": "claude-new-upstream",
                    "sampling": "temperature_or_top_p",
                },
            },
            "routes": {
                "reasoner-first": {"candidates": ["reasoner", "gpt"], "policy": "static"},
                "claude-new-first": {"candidates": ["claude-new", "gpt"], "policy": "static"},
                "unmarked-first": {"candidates": ["unmarked", "gpt"], "policy": "static"},
            },
            "default_route": "reasoner-first",
            "tenants": {LOCAL_TENANT: {"api_keys": [{"hash": hash_api_key(api_key), "name": "t"}]}},
        }
    )


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    server = FakeOpenAI()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def claude(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeAnthropic]:
    monkeypatch.setenv(ANTHROPIC_KEY_ENV, "sk-ant-test")
    server = FakeAnthropic()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def sdk(
    fake: FakeOpenAI, claude: FakeAnthropic, observer, tmp_path: Path, api_key: str
) -> AsyncIterator[openai.AsyncOpenAI]:
    config = _config(fake, claude, api_key)
    async with adapters_and_gateway(config, tmp_path, observer_addr=observer[0].address) as gateway:
        client = openai.AsyncOpenAI(
            base_url=f"http://127.0.0.1:{gateway.port}/v1", api_key=api_key, max_retries=0, timeout=10
        )
        yield client
        await client.close()


OTHER_SAMPLING = [
    ({"temperature": 0.2}, "temperature"),
    ({"top_p": 0.5}, "top_p"),
    ({"presence_penalty": 0.5}, "presence_penalty"),
    ({"logprobs": True}, "logprobs"),
    ({"logit_bias": {"50256": -100}}, "logit_bias"),
    ({"stop": ["END"]}, "stop"),
]


@pytest.mark.parametrize(("option", "param"), OTHER_SAMPLING)
async def test_other_sampling_goes_to_the_next_candidate_as_sent(
    fake: FakeOpenAI, sdk: openai.AsyncOpenAI, option: dict[str, Any], param: str
) -> None:
    raw = await sdk.chat.completions.with_raw_response.create(model="reasoner-first", messages=HI, **option)
    assert raw.headers["x-atp-model"] == "gpt"
    [sent] = fake.requests
    assert sent.body["model"] == "gpt-upstream" and sent.body[param] == option[param]


@pytest.mark.parametrize(("option", "param"), OTHER_SAMPLING)
async def test_naming_only_the_model_is_a_400_naming_the_parameter(
    fake: FakeOpenAI, sdk: openai.AsyncOpenAI, option: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.chat.completions.create(model="reasoner", messages=HI, **option)
    assert caught.value.param == param and "reasoner" in caught.value.message
    assert not fake.requests


async def test_the_default_sampling_reaches_the_model_as_sent(
    fake: FakeOpenAI, sdk: openai.AsyncOpenAI
) -> None:
    defaults = {"temperature": 1, "top_p": 1, "presence_penalty": 0, "frequency_penalty": 0}
    raw = await sdk.chat.completions.with_raw_response.create(model="reasoner-first", messages=HI, **defaults)
    assert raw.headers["x-atp-model"] == "reasoner"
    [sent] = fake.requests
    assert sent.body["model"] == "o3-upstream"
    assert {k: sent.body[k] for k in defaults} == defaults


async def test_the_fake_refuses_what_openai_refuses(fake: FakeOpenAI) -> None:
    # Without the filter, this is what the client would get: OpenAI's 400 for the reasoning model.
    client = openai.AsyncOpenAI(base_url=fake.base_url, api_key="k", max_retries=0, timeout=10)
    with pytest.raises(openai.BadRequestError, match="Only the default") as caught:
        await client.chat.completions.create(model="o3-upstream", messages=HI, temperature=0.2)
    assert (caught.value.param, caught.value.code) == ("temperature", "unsupported_value")
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="o4-mini", messages=HI, stop=["END"])
    assert (caught.value.param, caught.value.code) == ("stop", "unsupported_parameter")
    await client.chat.completions.create(model="o3-mini", messages=HI, stop=["END"])
    await client.close()


async def test_an_unmarked_model_costs_a_refused_call_then_the_route_fails_over(
    fake: FakeOpenAI, sdk: openai.AsyncOpenAI
) -> None:
    raw = await sdk.chat.completions.with_raw_response.create(
        model="unmarked-first", messages=HI, temperature=0.2
    )
    assert raw.headers["x-atp-model"] == "gpt"
    assert [r.body["model"] for r in fake.requests] == ["gpt-5-upstream", "gpt-upstream"]
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.chat.completions.create(model="unmarked", messages=HI, temperature=0.2)
    assert caught.value.param == "temperature"


async def test_both_samplers_pass_a_model_taking_one_of_them_over(
    fake: FakeOpenAI, claude: FakeAnthropic, sdk: openai.AsyncOpenAI
) -> None:
    both = {"temperature": 0.2, "top_p": 0.5}
    raw = await sdk.chat.completions.with_raw_response.create(model="claude-new-first", messages=HI, **both)
    assert raw.headers["x-atp-model"] == "gpt" and not claude.requests
    [sent] = fake.requests
    assert {k: sent.body[k] for k in both} == both
    # One of them is what the model takes: it serves it.
    raw = await sdk.chat.completions.with_raw_response.create(
        model="claude-new-first", messages=HI, top_p=0.5
    )
    assert raw.headers["x-atp-model"] == "claude-new" and claude.requests[-1].body["top_p"] == 0.5


async def test_a_messages_client_is_refused_in_its_own_dialect(
    fake: FakeOpenAI, sdk: openai.AsyncOpenAI, api_key: str
) -> None:
    base_url = str(sdk.base_url).removesuffix("/v1/")
    client = anthropic.AsyncAnthropic(base_url=base_url, api_key=api_key, max_retries=0, timeout=10)
    with pytest.raises(anthropic.BadRequestError) as caught:
        await client.messages.create(
            model="reasoner", max_tokens=16, messages=HI, extra_body={"temperature": 0.5}
        )
    error = strict(ErrorResponse, caught.value.body).error
    assert error.type == "invalid_request_error" and "temperature" in error.message
    reply = await client.messages.create(
        model="reasoner-first", max_tokens=16, messages=HI, extra_body={"top_p": 0.5}
    )
    assert reply.model == "gpt" and [r.body["model"] for r in fake.requests] == ["gpt-upstream"]
    await client.close()
