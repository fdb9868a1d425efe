"""POST /v1/embeddings over the adapters' Embed, and GET /v1/models[/{id}] for the calling key's tenant."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import struct
import time
from typing import Annotated, Any, Literal, Required

import grpc
import orjson
from grpc import aio
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError
from typing_extensions import TypedDict

from atp.adapters.v1 import adapters_pb2
from atp_common.errors import AtpError, Cancelled, Internal, NotFound, Unavailable
from atp_gateway import metrics
from atp_gateway.asgi import Receive, RequestHeaders, Scope, Send, send_error, send_json
from atp_gateway.auth import api_key_from_headers
from atp_gateway.dialects.messages_models import serve_anthropic_models, wants_anthropic
from atp_gateway.errors import error_from_rpc, error_from_validation
from atp_gateway.exchange import CLIENT_GONE, admit, parse_tags
from atp_gateway.gateway import Gateway
from atp_gateway.reply_headers import add_limit_headers

log = logging.getLogger("atp.gateway.embeddings")

__all__ = ["EMBEDDING_REQUEST", "PARAMETERS", "handle_embeddings", "handle_model", "handle_models", "watched"]

_CONFIG = ConfigDict(extra="forbid", strict=True)
MAX_INPUTS = 2048
TokenIds = Annotated[list[Annotated[int, Field(ge=0, le=2**31 - 1)]], Field(min_length=1, max_length=8192)]

# Every request parameter and the Embed field that carries it (for the README's compatibility table).
PARAMETERS: tuple[tuple[str, str], ...] = (
    ("model", "model"),
    ("input (string, strings)", "inputs.text"),
    ("input (token ids, arrays of token ids)", "inputs.tokens"),
    ("encoding_format", "gateway"),
    ("dimensions", "dimensions"),
    ("user", "user"),
)


class EmbeddingRequest(TypedDict, total=False):
    """OpenAI's embeddings request."""

    __pydantic_config__ = _CONFIG  # type: ignore[misc]
    model: Required[Annotated[str, Field(min_length=1, max_length=256)]]
    input: Required[
        Annotated[str, Field(min_length=1)]
        | Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1, max_length=MAX_INPUTS)]
        | TokenIds
        | Annotated[list[TokenIds], Field(min_length=1, max_length=MAX_INPUTS)]
    ]
    encoding_format: Literal["float", "base64"]
    dimensions: Annotated[int, Field(ge=1, le=65536)]
    user: Annotated[str, Field(max_length=256)]


EMBEDDING_REQUEST = TypeAdapter(EmbeddingRequest)


def _inputs(value: Any) -> list[adapters_pb2.EmbedInput]:
    if isinstance(value, str):
        return [adapters_pb2.EmbedInput(text=value)]
    if isinstance(value[0], str):
        return [adapters_pb2.EmbedInput(text=text) for text in value]
    if isinstance(value[0], int):
        return [adapters_pb2.EmbedInput(tokens=adapters_pb2.TokenIds(ids=value))]
    return [adapters_pb2.EmbedInput(tokens=adapters_pb2.TokenIds(ids=ids)) for ids in value]


def embed_request(
    body: bytes, headers: RequestHeaders, tenant: str, key_id: str
) -> tuple[adapters_pb2.EmbedRequest, bool]:
    """The Embed request for a body, and whether the client asked for base64."""
    try:
        parsed = EMBEDDING_REQUEST.validate_json(body)
    except ValidationError as exc:
        raise error_from_validation(exc) from None
    request = adapters_pb2.EmbedRequest(
        request_id=headers.request_id,
        tenant=tenant,
        key_id=key_id,
        model=parsed["model"],
        inputs=_inputs(parsed["input"]),
        user=parsed.get("user", ""),
    )
    if (dimensions := parsed.get("dimensions")) is not None:
        request.dimensions = dimensions
    if headers.end_user is not None:
        request.end_user = headers.end_user.decode("utf-8", "replace")[:256]
    else:
        request.end_user = request.user
    if headers.tags is not None:
        request.tags.update(parse_tags(headers.tags))
    return request, parsed.get("encoding_format") == "base64"


def embeddings_json(reply: adapters_pb2.EmbedResponse, base64_output: bool) -> dict[str, Any]:
    """OpenAI's CreateEmbeddingResponse; base64 is the little-endian float32 array, as OpenAI encodes it."""
    data = []
    for index, embedding in enumerate(reply.embeddings):
        values = embedding.values
        vector: Any = (
            base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
            if base64_output
            else list(values)
        )
        data.append({"object": "embedding", "index": index, "embedding": vector})
    prompt = reply.usage.prompt_tokens
    return {
        "object": "list",
        "data": data,
        "model": reply.header.model,
        "usage": {"prompt_tokens": prompt, "total_tokens": prompt + reply.usage.completion_tokens},
    }


async def watched(call: aio.UnaryUnaryCall, receive: Receive) -> Any:
    """The call's reply; cancelled (Cancelled raised) when the client leaves first."""

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.create_task(watch())
    reply_task = asyncio.ensure_future(call)
    try:
        await asyncio.wait((watcher, reply_task), return_when=asyncio.FIRST_COMPLETED)
        if not reply_task.done():
            call.cancel()
            raise Cancelled("client disconnected")
        return reply_task.result()
    finally:
        watcher.cancel()
        if not reply_task.done():
            reply_task.cancel()
            # Waits without raising the call's own outcome; a cancellation of this task still propagates.
            await asyncio.wait((reply_task,))


async def handle_embeddings(gateway: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    """The whole embeddings exchange; never raises."""
    started = time.perf_counter()
    headers = RequestHeaders(scope)
    reply_headers = [(b"x-request-id", headers.request_id.encode())]
    status = 500
    try:
        principal, body = await admit(gateway, headers, receive)
        request, base64_output = embed_request(body, headers, principal.tenant, principal.key_id)
        if gateway.adapters is None:
            raise Unavailable("The gateway is starting.")
        call = gateway.adapters.embed(request)
        try:
            reply = await watched(call, receive)
            # The adapters admit the request against the tenant's limits and report them as for chat.
            add_limit_headers(reply_headers, await call.trailing_metadata())
        except aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                # Adapters older than Embed (a rolling upgrade): not a fault of the request.
                raise Unavailable("These adapters do not serve embeddings yet; retry shortly.") from None
            raise error_from_rpc(exc, generating=True) from None
        if len(reply.embeddings) != len(request.inputs):
            log.error(
                "adapters returned %d embeddings for %d inputs", len(reply.embeddings), len(request.inputs)
            )
            raise Internal("internal error")
        reply_headers.append((b"x-atp-decision-id", reply.header.decision_id.encode()))
        reply_headers.append((b"x-atp-model", reply.header.model.encode()))
        await send_json(send, 200, orjson.dumps(embeddings_json(reply, base64_output)), reply_headers)
        status = 200
    except Cancelled:
        status = CLIENT_GONE
    except AtpError as exc:
        status = (await send_error(send, exc, reply_headers)).status
    except OSError:
        status = CLIENT_GONE
    except Exception:
        log.exception("embeddings request failed", extra={"request_id": headers.request_id})
        with contextlib.suppress(Exception):
            status = (await send_error(send, Internal("internal error"), reply_headers)).status
    finally:
        metrics.observe("embeddings", status, time.perf_counter() - started)


def _model_json(model: adapters_pb2.ModelInfo) -> dict[str, Any]:
    return {
        "id": model.id,
        "object": "model",
        "created": 0,
        "owned_by": model.provider or "atp",
        "kind": model.kind,
        "context_window": model.context_window or None,
        "capabilities": list(model.capabilities),
    }


async def _serve_models(gateway: Gateway, scope: Scope, send: Send, model_id: str | None) -> None:
    if wants_anthropic(scope):
        await serve_anthropic_models(gateway, scope, send, model_id)
        return
    started = time.perf_counter()
    headers = RequestHeaders(scope)
    reply_headers = [(b"x-request-id", headers.request_id.encode())]
    try:
        principal = gateway.keys.authenticate(api_key_from_headers(headers.authorization, headers.api_key))
        if gateway.adapters is None:
            raise Unavailable("The gateway is starting.")
        models = await gateway.adapters.models(principal.tenant, principal.key_id)
        if model_id is None:
            body: dict[str, Any] = {"object": "list", "data": [_model_json(m) for m in models]}
        else:
            found = next((m for m in models if m.id == model_id), None)
            if found is None:
                raise NotFound(
                    f"The model '{model_id}' does not exist or you do not have access to it.", param="model"
                )
            body = _model_json(found)
    except AtpError as exc:
        status = (await send_error(send, exc, reply_headers)).status
    else:
        await send_json(send, 200, orjson.dumps(body), reply_headers)
        status = 200
    metrics.observe("models", status, time.perf_counter() - started)


async def handle_models(gateway: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    """GET /v1/models: what the calling key's tenant may use (its allowed and denied models applied)."""
    await _serve_models(gateway, scope, send, None)


def handle_model(model_id: str) -> Any:
    """GET /v1/models/{id}: one of those, or a 404 naming the model."""

    async def handler(gateway: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
        await _serve_models(gateway, scope, send, model_id)

    return handler
