"""The anthropic SDK's anthropic_sdk.models against the real gateway and adapters: Anthropic's shapes and cursor
pages over what the key's tenant may use, Anthropic's errors, and the OpenAI shape kept for other callers."""

from __future__ import annotations

import anthropic
import httpx
import orjson
import pytest
from anthropic.types import ModelInfo
from anthropic.types.shared import ErrorResponse

from tests.support.dialect_stack import DialectStack
from tests.support.sdk_models import strict

EVERY = ["az", "azure-first", "claude", "claude-first", "claude-new", "gem", "gpt", "mixed"]


def _strict_model(item: dict) -> ModelInfo:
    # The wire carries created_at as RFC 3339 text, which strict mode only takes from JSON.
    return ModelInfo.model_validate_json(orjson.dumps(item), strict=True)


async def test_the_list_is_anthropics_shape_and_pages_through_every_model(
    anthropic_sdk: anthropic.AsyncAnthropic,
) -> None:
    raw = await anthropic_sdk.models.with_raw_response.list(limit=2)
    page = orjson.loads(raw.http_response.content)
    assert set(page) == {"data", "has_more", "first_id", "last_id"}
    assert page["has_more"] is True and len(page["data"]) == 2
    assert (page["first_id"], page["last_id"]) == (page["data"][0]["id"], page["data"][1]["id"])
    for item in page["data"]:
        _strict_model(item)
    # The SDK's auto-pagination follows last_id with after_id until has_more is false.
    seen = [model.id async for model in anthropic_sdk.models.list(limit=2)]
    assert sorted(seen) == EVERY and len(seen) == len(set(seen))
    routes = {m.id: m.display_name async for m in anthropic_sdk.models.list(limit=1000)}
    assert routes["mixed"] == "mixed (ATP route)" and routes["claude"] == "claude"


async def test_before_id_pages_backwards_and_lifecycle_filters(
    anthropic_sdk: anthropic.AsyncAnthropic,
) -> None:
    everything = [m.id async for m in anthropic_sdk.models.list(limit=1000)]
    last = everything[-1]
    before = await anthropic_sdk.models.list(before_id=last, limit=2)
    assert [m.id for m in before.data] == everything[-3:-1]
    assert before.has_more is (len(everything) > 3)
    retired = await anthropic_sdk.models.list(lifecycle=["retired"])
    assert (retired.data, retired.has_more, retired.first_id) == ([], False, None)
    active = await anthropic_sdk.models.list(lifecycle=["active", "deprecated"], limit=1000)
    assert [m.id for m in active.data] == everything


async def test_retrieve_answers_one_model_or_anthropics_not_found(
    anthropic_sdk: anthropic.AsyncAnthropic,
) -> None:
    raw = await anthropic_sdk.models.with_raw_response.retrieve("claude")
    model = _strict_model(orjson.loads(raw.http_response.content))
    assert (model.id, model.type, model.lifecycle) == ("claude", "model", "active")
    with pytest.raises(anthropic.NotFoundError) as caught:
        await anthropic_sdk.models.retrieve("no-such-model")
    error = strict(ErrorResponse, caught.value.body)
    assert error.error.type == "not_found_error" and "no-such-model" in error.error.message


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("after_id=nobody", "after_id"),
        ("after_id=claude&before_id=gpt", "before_id"),
        ("lifecycle[]=gone", "lifecycle"),
        ("order=asc", "order"),
    ],
)
async def test_bad_queries_get_anthropics_400_naming_the_parameter(
    dialects: DialectStack, api_key: str, query: str, named: str
) -> None:
    async with httpx.AsyncClient(base_url=dialects.base_url, timeout=10) as http:
        reply = await http.get(
            f"/v1/models?{query}", headers={"x-api-key": api_key, "anthropic-version": "2023-06-01"}
        )
    assert reply.status_code == 400
    error = strict(ErrorResponse, reply.json())
    assert error.error.type == "invalid_request_error" and error.error.message.startswith(named)


async def test_a_bad_key_gets_anthropics_401_and_openai_callers_keep_their_shape(
    dialects: DialectStack, api_key: str
) -> None:
    async with httpx.AsyncClient(base_url=dialects.base_url, timeout=10) as http:
        refused = await http.get(
            "/v1/models", headers={"x-api-key": "nope", "anthropic-version": "2023-06-01"}
        )
        openai_shaped = await http.get("/v1/models", headers={"authorization": f"Bearer {api_key}"})
        one = await http.get("/v1/models/claude?beta=true", headers={"authorization": f"Bearer {api_key}"})
    assert refused.status_code == 401
    assert strict(ErrorResponse, refused.json()).error.type == "authentication_error"
    assert openai_shaped.json()["object"] == "list"
    assert sorted(m["id"] for m in openai_shaped.json()["data"]) == EVERY
    assert one.json()["object"] == "model"
