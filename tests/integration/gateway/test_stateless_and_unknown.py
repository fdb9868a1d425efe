"""What ATP does not keep or serve, answered in each client's own terms: a stored Response's retrieve,
delete, cancel and input items are OpenAI's 404 for the id; unknown paths and methods are errors in the
caller's dialect (Anthropic's shape for a caller that sends anthropic-version)."""

from __future__ import annotations

import anthropic
import httpx
import openai
import pytest
from anthropic.types.shared import ErrorResponse

from tests.support.dialect_stack import DialectStack
from tests.support.sdk_models import strict


async def test_a_stored_responses_calls_get_openais_404_naming_the_id(
    dialects: DialectStack, api_key: str
) -> None:
    client = openai.AsyncOpenAI(
        base_url=dialects.base_url + "/v1", api_key=api_key, max_retries=0, timeout=10
    )
    calls = [
        lambda: client.responses.retrieve("resp_123"),
        lambda: client.responses.delete("resp_123"),
        lambda: client.responses.cancel("resp_123"),
        lambda: client.responses.input_items.list("resp_123"),
    ]
    try:
        for call in calls:
            with pytest.raises(openai.NotFoundError) as caught:
                await call()
            error = caught.value.body
            assert "No response found with id 'resp_123'" in error["message"]
            assert error["param"] == "response_id"
        wrong = openai.AsyncOpenAI(base_url=dialects.base_url + "/v1", api_key="sk-wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            await wrong.responses.retrieve("resp_123")
        await wrong.close()
    finally:
        await client.close()
    assert not dialects.openai.requests


async def test_unknown_paths_and_methods_answer_in_the_callers_dialect(
    dialects: DialectStack, api_key: str
) -> None:
    sdk = anthropic.AsyncAnthropic(base_url=dialects.base_url, api_key=api_key, max_retries=0, timeout=10)
    try:
        with pytest.raises(anthropic.NotFoundError) as caught:
            await sdk.messages.batches.retrieve("msgbatch_1")
    finally:
        await sdk.close()
    error = strict(ErrorResponse, caught.value.body)
    assert error.error.type == "not_found_error" and "/v1/messages/batches/msgbatch_1" in error.error.message
    anthropic_headers = {"x-api-key": api_key, "anthropic-version": "2023-06-01"}
    async with httpx.AsyncClient(base_url=dialects.base_url, timeout=10) as http:
        wrong_method = await http.get("/v1/messages", headers=anthropic_headers)
        openai_style = await http.get("/v1/messages", headers={"authorization": f"Bearer {api_key}"})
    assert wrong_method.status_code == 405
    assert strict(ErrorResponse, wrong_method.json()).error.type == "invalid_request_error"
    assert openai_style.status_code == 405 and openai_style.json()["error"]["code"] == "method_not_allowed"
