"""Errors that say what the caller needs and nothing more: ids and ranges checked first, no internals."""

from __future__ import annotations

import socket

import httpx
import pytest

from atp_gateway.app import create_app
from atp_gateway.settings import GatewaySettings

CHAT = "/v1/chat/completions"
BODY = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}


def _error(response: httpx.Response, status: int, param: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    if param is not None:
        assert error["param"] == param
    return error


@pytest.mark.parametrize("decision_id", ["d" * 10_000, "dec 1", "dec%0A1", "-leading-dash", "dec%00x"])
async def test_a_malformed_decision_id_is_400_before_any_call(client, decision_id):
    error = _error(await client.get(f"/v1/admin/decisions/{decision_id}"), 400, "decision_id")
    assert "metadata" not in error["message"] and len(error["message"]) < 200


async def test_a_malformed_decision_id_in_feedback_is_400_naming_it(client, observer):
    for decision_id in ("d" * 10_000, "dec 1", "dec-1\n"):
        body = {"decision_id": decision_id, "score": 1}
        _error(await client.post("/v1/feedback", json=body), 400, "decision_id")
    assert observer[1].feedback == []


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("start=99999999999999", "start"),
        ("end=-99999999999999", "end"),
        ("start=200&end=100", "start"),
        ("tenant=" + "t" * 500, "tenant"),
        ("group_by=model,colour", "group_by"),
        ("group_by=" + "x" * 5000, "group_by"),
        ("group_by=day,hour&start=0", "group_by"),
        ("group_by=key,day", "start"),
        ("group_by=hour&start=0", "start"),
    ],
)
async def test_out_of_range_usage_parameters_are_400(client, query, param):
    error = _error(await client.get(f"/v1/admin/usage?{query}"), 400, param)
    assert len(error["message"]) < 300


async def test_a_malformed_observation_page_key_is_400(client):
    _error(
        await client.get("/v1/admin/observations?before_observation_id=" + "x" * 300),
        400,
        "before_observation_id",
    )


async def test_an_unreachable_adapters_is_a_retryable_503_naming_no_address(observer, config, api_key):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{probe.getsockname()[1]}"
    settings = GatewaySettings(
        port=0, metrics_port=None, adapters_addr=dead, observer_addr=observer[0].address
    )
    app = create_app(settings, config=config)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as http:
            for stream in (False, True):
                response = await http.post(
                    CHAT, json={**BODY, "stream": stream}, headers={"authorization": f"Bearer {api_key}"}
                )
                error = _error(response, 503)
                assert response.headers["retry-after"] == "1"
                text = response.text.lower()
                assert "127.0.0.1" not in text and dead.split(":")[1] not in text
                assert "connect" not in text and "ipv4" not in text
                assert error["message"] == "The service is temporarily unavailable; retry shortly."


def test_openapi_says_max_tokens_and_max_completion_tokens_exclude_each_other(settings, config):
    schema = create_app(settings, config=config).openapi()
    body = schema["paths"][CHAT]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["not"]["required"] == ["max_tokens", "max_completion_tokens"]
    assert "max_completion_tokens" in body["properties"]["max_tokens"]["description"]
