"""A model configured with `sampling: default` (OpenAI's reasoning models, which refuse any other sampling)
through the real gateway and adapters: a request that sets temperature or top_p other than 1, a penalty,
logprobs or logit_bias passes it over for the route's next candidate as sent; a request naming only it gets
a 400 naming the parameter; the default values reach it as sent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest

from atp_common.config import LOCAL_TENANT, AtpConfig, hash_api_key
from tests.fakes import FakeOpenAI
from tests.support.stack import adapters_and_gateway

HI = [{"role": "user", "content": "Say hi."}]


def _config(fake: FakeOpenAI, api_key: str) -> AtpConfig:
    return AtpConfig.model_validate(
        {
            "providers": {"openai": {"type": "openai", "base_url": fake.base_url, "max_retries": 0}},
            "models": {
                "reasoner": {"provider": "openai", "provider_model": "o3-upstream", "sampling": "default"},
                "gpt": {"provider": "openai", "provider_model": "gpt-upstream"},
            },
            "routes": {"reasoner-first": {"candidates": ["reasoner", "gpt"], "policy": "static"}},
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
async def sdk(fake: FakeOpenAI, observer, tmp_path: Path, api_key: str) -> AsyncIterator[openai.AsyncOpenAI]:
    config = _config(fake, api_key)
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


async def test_the_fake_refuses_what_openai_refuses(fake: FakeOpenAI, api_key: str) -> None:
    # Without the filter, this is what the client would get: OpenAI's 400 for the reasoning model.
    client = openai.AsyncOpenAI(base_url=fake.base_url, api_key="k", max_retries=0, timeout=10)
    with pytest.raises(openai.BadRequestError, match="Only the default"):
        await client.chat.completions.create(model="o3-upstream", messages=HI, temperature=0.2)
    await client.close()
