"""GET /v1/models in Anthropic's shape and pages, for callers that send anthropic-version (its SDK does)."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qsl

import orjson

from atp.adapters.v1 import adapters_pb2
from atp_common.errors import AtpError, InvalidArgument, NotFound, Unavailable
from atp_gateway import metrics
from atp_gateway.asgi import RequestHeaders, Scope, Send, send_json
from atp_gateway.auth import api_key_from_headers
from atp_gateway.dialects.messages_errors import messages_error_reply
from atp_gateway.gateway import Gateway

__all__ = ["serve_anthropic_models", "wants_anthropic"]

# ATP does not know when a provider released a model; Anthropic documents the epoch for that case.
_UNKNOWN_DATE = "1970-01-01T00:00:00Z"
_LIFECYCLES = frozenset({"active", "deprecated", "retired"})
_MAX_QUERY = 2048


def wants_anthropic(scope: Scope) -> bool:
    """Whether the caller speaks Anthropic's API: its SDK sends anthropic-version on every request."""
    return any(name == b"anthropic-version" for name, _ in scope["headers"])


class _Query:
    """The list's query: limit, after_id or before_id, lifecycle stages; anything else is refused."""

    def __init__(self, scope: Scope, listing: bool) -> None:
        raw = scope.get("query_string", b"")
        if len(raw) > _MAX_QUERY:
            raise InvalidArgument("query string too long", param="query")
        self.limit = 20
        self.after_id = self.before_id = ""
        self.lifecycles: set[str] = set()
        for name, value in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
            if name == "beta":
                continue  # the SDK's beta resources mark their calls so; the list is the same
            if not listing:
                raise InvalidArgument(f"{name}: unknown query parameter", param=name)
            self._take(name, value)
        if self.after_id and self.before_id:
            raise InvalidArgument("before_id: cannot be set with after_id", param="before_id")

    def _take(self, name: str, value: str) -> None:
        if name == "limit":
            if not value.isdigit() or not 1 <= int(value) <= 1000:
                raise InvalidArgument("limit: expected an integer from 1 to 1000", param="limit")
            self.limit = int(value)
        elif name in ("after_id", "before_id"):
            setattr(self, name, value)
        elif name in ("lifecycle", "lifecycle[]"):
            for stage in value.split(","):
                if stage not in _LIFECYCLES:
                    raise InvalidArgument(
                        f"lifecycle: expected active, deprecated or retired, got {stage!r}", param="lifecycle"
                    )
                self.lifecycles.add(stage)
        else:
            raise InvalidArgument(f"{name}: unknown query parameter", param=name)


def _model_json(model: adapters_pb2.ModelInfo) -> dict[str, Any]:
    # Only Anthropic's fields: its SDK's ModelInfo has no place for ATP's kind and capability list (the
    # OpenAI-shaped list carries those), so a route says what it is in its display name.
    return {
        "type": "model",
        "id": model.id,
        "display_name": f"{model.id} (ATP route)" if model.kind == "route" else model.id,
        "created_at": _UNKNOWN_DATE,
        "lifecycle": "active",
        "max_input_tokens": model.context_window or None,
    }


def _page(models: list[adapters_pb2.ModelInfo], query: _Query) -> dict[str, Any]:
    """Anthropic's cursor page over the list in its order (ATP serves only active models)."""
    if query.lifecycles and "active" not in query.lifecycles:
        models = []
    ids = [m.id for m in models]
    start, end = 0, len(models)
    for cursor, name in ((query.after_id, "after_id"), (query.before_id, "before_id")):
        if cursor and cursor not in ids:
            raise InvalidArgument(f"{name}: no model {cursor!r} in this list", param=name)
    if query.before_id:
        end = ids.index(query.before_id)
        start = max(0, end - query.limit)
        has_more = start > 0
    else:
        if query.after_id:
            start = ids.index(query.after_id) + 1
        end = min(len(models), start + query.limit)
        has_more = end < len(models)
    page = models[start:end]
    return {
        "data": [_model_json(m) for m in page],
        "has_more": has_more,
        "first_id": page[0].id if page else None,
        "last_id": page[-1].id if page else None,
    }


async def serve_anthropic_models(gateway: Gateway, scope: Scope, send: Send, model_id: str | None) -> None:
    """The list (paged) or one model, with Anthropic's errors."""
    started = time.perf_counter()
    headers = RequestHeaders(scope)
    reply_headers = [(b"x-request-id", headers.request_id.encode())]
    try:
        principal = gateway.keys.authenticate(api_key_from_headers(headers.authorization, headers.api_key))
        query = _Query(scope, listing=model_id is None)
        if gateway.adapters is None:
            raise Unavailable("The gateway is starting.")
        models = list(await gateway.adapters.models(principal.tenant, principal.key_id))
        if model_id is None:
            body = _page(models, query)
        else:
            found = next((m for m in models if m.id == model_id), None)
            if found is None:
                raise NotFound(f"model: {model_id}", param="model")
            body = _model_json(found)
    except AtpError as exc:
        reply = messages_error_reply(exc)
        await send_json(send, reply.status, reply.body, [*reply_headers, *reply.headers])
        status = reply.status
    else:
        await send_json(send, 200, orjson.dumps(body), reply_headers)
        status = 200
    metrics.observe("models", status, time.perf_counter() - started)
