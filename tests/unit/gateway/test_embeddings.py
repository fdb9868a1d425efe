"""POST /v1/embeddings over the adapters' Embed: inputs, encodings, headers and refusals."""

from __future__ import annotations

import asyncio
import base64
import struct

import orjson
import pytest
from openai.types import CreateEmbeddingResponse

EMBEDDINGS = "/v1/embeddings"


async def test_string_and_batch_inputs_as_floats(client, adapters):
    response = await client.post(
        EMBEDDINGS,
        json={"model": "embed", "input": ["one", "three"], "dimensions": 3, "user": "u7"},
        headers={"x-atp-tags": "team=search, env=test"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    CreateEmbeddingResponse.model_validate(body, strict=True)
    assert [d["embedding"] for d in body["data"]] == [[0.0, 3.0, 0.5], [1.0, 5.0, 0.5]]
    assert [d["index"] for d in body["data"]] == [0, 1]
    assert body["model"] == "embed-1" and body["usage"] == {"prompt_tokens": 4, "total_tokens": 4}
    assert response.headers["x-atp-decision-id"] == "dec-e"
    assert response.headers["x-ratelimit-remaining-requests"] == "9"
    sent = adapters[1].embed_requests[0]
    assert [x.text for x in sent.inputs] == ["one", "three"]
    assert sent.dimensions == 3 and sent.user == "u7" and sent.end_user == "u7"
    assert sent.tenant == "local" and sent.key_id
    assert dict(sent.tags) == {"team": "search", "env": "test"}


async def test_token_inputs_and_base64(client, adapters):
    response = await client.post(
        EMBEDDINGS,
        json={"model": "embed", "input": [[1, 2, 3], [4]], "encoding_format": "base64"},
        headers={"x-atp-user": "alice"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    first = base64.b64decode(body["data"][0]["embedding"])
    assert struct.unpack("<3f", first) == (0.0, 3.0, 0.5)
    sent = adapters[1].embed_requests[0]
    assert [list(x.tokens.ids) for x in sent.inputs] == [[1, 2, 3], [4]]
    assert sent.end_user == "alice"
    single = await client.post(EMBEDDINGS, json={"model": "embed", "input": [7, 8]})
    assert single.json()["data"][0]["embedding"] == [0.0, 2.0, 0.5]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "x"}, "model"),
        ({"model": "embed"}, "input"),
        ({"model": "embed", "input": ""}, "input"),
        ({"model": "embed", "input": []}, "input"),
        ({"model": "embed", "input": [[-1]]}, "input[0][0]"),
        ({"model": "embed", "input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"model": "embed", "input": "x", "dimensions": 0}, "dimensions"),
        ({"model": "embed", "input": "x", "colour": 1}, "colour"),
        ({"model": "nope", "input": "x"}, "model"),
    ],
)
async def test_bad_requests_name_the_parameter(client, body, param):
    response = await client.post(EMBEDDINGS, json=body)
    assert response.status_code in (400, 404), response.text
    assert response.json()["error"]["param"] == param


async def test_bad_tags_header_is_a_400(client):
    response = await client.post(
        EMBEDDINGS, json={"model": "embed", "input": "x"}, headers={"x-atp-tags": "novalue"}
    )
    assert response.status_code == 400 and response.json()["error"]["param"] == "x-atp-tags"


async def test_a_reply_short_of_embeddings_is_an_internal_error(client):
    response = await client.post(EMBEDDINGS, json={"model": "embed-short", "input": ["a", "b"]})
    assert response.status_code == 500 and "Traceback" not in response.text


async def test_a_client_that_leaves_cancels_the_embed_call(live, adapters, api_key):
    body = orjson.dumps({"model": "embed-hang", "input": "x"})
    _reader, writer = await asyncio.open_connection("127.0.0.1", live.port)
    head = (
        f"POST /v1/embeddings HTTP/1.1\r\nhost: gateway\r\nauthorization: Bearer {api_key}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    writer.write(head.encode() + body)
    await writer.drain()
    await asyncio.wait_for(adapters[1].hanging.wait(), 5)
    writer.close()
    await asyncio.wait_for(adapters[1].cancelled.wait(), 5)
