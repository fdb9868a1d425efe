"""The FastAPI application: routes, the OpenAI-format error handlers and the health endpoints."""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from grpc import aio
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from atp_common.config import AtpConfig, load_config
from atp_common.errors import AtpError, Internal, InvalidArgument, NotFound, Unavailable
from atp_gateway import metrics, schemas
from atp_gateway.admin import admin_router
from atp_gateway.asgi import Receive, RequestHeaders, Scope, Send, read_body, send_error, send_json
from atp_gateway.auth import KeyStore, api_key_from_headers
from atp_gateway.chat import handle_chat
from atp_gateway.console import mount_console
from atp_gateway.dialects.counting import MESSAGES_COUNT, RESPONSES_COUNT, count_handler
from atp_gateway.dialects.messages import MESSAGES
from atp_gateway.dialects.messages_errors import messages_error_reply
from atp_gateway.dialects.messages_openapi import (
    COUNT_OPENAPI,
    COUNT_REPLIES,
    MESSAGES_OPENAPI,
    MESSAGES_REPLIES,
)
from atp_gateway.dialects.responses import RESPONSES
from atp_gateway.dialects.responses_openapi import (
    INPUT_TOKENS_OPENAPI,
    INPUT_TOKENS_REPLIES,
    RESPONSES_OPENAPI,
    RESPONSES_REPLIES,
)
from atp_gateway.dialects.responses_stored import stored_response
from atp_gateway.embeddings import handle_embeddings, handle_model, handle_models
from atp_gateway.errors import error_from_validation, error_reply
from atp_gateway.exchange import Dialect, serve
from atp_gateway.fastpath import GatewayApp
from atp_gateway.gateway import Gateway
from atp_gateway.settings import GatewaySettings
from atp_gateway.websocket import handle_websocket

log = logging.getLogger("atp.gateway.app")

__all__ = ["create_app"]


class _RawResponse(Response):
    """Hands the ASGI triple to a handler that writes its own reply (no Starlette response machinery)."""

    def __init__(self, handler: Any, gateway: Gateway):
        self._handler = handler
        self._gateway = gateway
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._handler(self._gateway, scope, receive, send)


def dialect_handler(dialect: Dialect) -> Any:
    """The raw handler of a dialect's HTTP route (pass it to _RawResponse): the one exchange for it."""
    return functools.partial(serve, dialect)


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers=headers, media_type="application/json")


def _error_response(exc: AtpError, request: Request | None = None) -> Response:
    # A caller that speaks Anthropic's API (its SDK sends anthropic-version) gets Anthropic's error shape.
    anthropic = request is not None and "anthropic-version" in request.headers
    reply = messages_error_reply(exc) if anthropic else error_reply(exc)
    headers = {name.decode(): value.decode() for name, value in reply.headers}
    return Response(reply.body, reply.status, headers=headers, media_type="application/json")


async def _feedback(gateway: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    started = time.perf_counter()
    headers = RequestHeaders(scope)
    reply_headers = [(b"x-request-id", headers.request_id.encode())]
    try:
        principal = gateway.keys.authenticate(api_key_from_headers(headers.authorization, headers.api_key))
        body = await read_body(receive, headers.content_length, gateway.settings.max_body_bytes)
        try:
            feedback = schemas.FEEDBACK_REQUEST.validate_json(body)
        except ValidationError as exc:
            raise error_from_validation(exc) from None
        if gateway.observer is None:
            raise Unavailable("The gateway is starting.")
        reply = await gateway.observer.record_feedback(
            decision_id=feedback["decision_id"],
            tenant=principal.tenant,
            score=feedback["score"],
            label=feedback.get("label", ""),
            comment=feedback.get("comment", ""),
        )
    except AtpError as exc:
        status = (await send_error(send, exc, reply_headers)).status
    else:
        out = {
            "id": reply.feedback_id,
            "object": "feedback",
            "decision_id": feedback["decision_id"],
            "joined": reply.joined,
        }
        await send_json(send, 200, orjson.dumps(out), reply_headers)
        status = 200
    metrics.observe("feedback", status, time.perf_counter() - started)


def create_app(
    settings: GatewaySettings,
    *,
    config: AtpConfig | None = None,
    adapters_channel: aio.Channel | None = None,
    observer_channel: aio.Channel | None = None,
    key_store: KeyStore | None = None,
) -> FastAPI:
    """The gateway application. Channels given here are used as they are and not closed by the app.

    The app's lifespan opens the missing channels and starts following the adapters' health; a test
    driving it through httpx's ASGITransport enters `app.router.lifespan_context(app)` itself.
    """
    gateway = Gateway(
        settings,
        config if config is not None else load_config(settings.config_path),
        adapters_channel=adapters_channel,
        observer_channel=observer_channel,
        key_store=key_store,
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            await gateway.close()

    app = GatewayApp(
        title="ATP gateway",
        version="1",
        description="OpenAI-compatible edge of ATP, an LLM routing gateway.",
        lifespan=lifespan,
        redoc_url=None,
    )
    app.state.gateway = gateway
    # Chat requests skip the FastAPI stack unless tracing needs its middleware (fastpath.py).
    app.chat_gateway = None if settings.tracing or settings.otlp_endpoint else gateway
    _add_error_handlers(app)
    if settings.tracing or settings.otlp_endpoint:
        # Only when tracing is on: the middleware costs a span per request even when nothing exports it.
        from atp_common.telemetry import instrument_app

        instrument_app(app)

    _add_api_routes(app, gateway)
    _add_probes(app, gateway)
    _customize_openapi(app)
    return app


def _add_api_routes(app: FastAPI, gateway: Gateway) -> None:
    """The client APIs: each route hands the raw ASGI triple to its handler (declared here for OpenAPI)."""

    @app.post(
        "/v1/chat/completions",
        openapi_extra=schemas.CHAT_OPENAPI,
        responses=schemas.CHAT_RESPONSES,
        response_class=Response,
        summary="Create a chat completion (OpenAI-compatible, JSON or SSE)",
    )
    async def chat_completions(request: Request) -> Response:
        return _RawResponse(handle_chat, gateway)

    @app.post(
        "/v1/responses",
        openapi_extra=RESPONSES_OPENAPI,
        responses=RESPONSES_REPLIES,
        response_class=Response,
        summary="Create a model response (OpenAI Responses API, stateless; JSON or SSE events)",
    )
    async def responses(request: Request) -> Response:
        return _RawResponse(dialect_handler(RESPONSES), gateway)

    @app.post(
        "/v1/messages",
        openapi_extra=MESSAGES_OPENAPI,
        responses=MESSAGES_REPLIES,
        response_class=Response,
        summary="Create a message (Anthropic Messages API; JSON or SSE events; Anthropic's errors)",
    )
    async def messages(request: Request) -> Response:
        return _RawResponse(dialect_handler(MESSAGES), gateway)

    @app.post(
        "/v1/embeddings",
        openapi_extra=schemas.EMBEDDINGS_OPENAPI,
        responses=schemas.EMBEDDINGS_RESPONSES,
        response_class=Response,
        summary="Create embeddings (OpenAI-compatible; float or base64)",
    )
    async def embeddings(request: Request) -> Response:
        return _RawResponse(handle_embeddings, gateway)

    _add_count_routes(app, gateway)
    _add_stored_response_routes(app, gateway)
    _add_resource_routes(app, gateway)


def _add_count_routes(app: FastAPI, gateway: Gateway) -> None:
    """The dialects' input token counts."""
    count_messages = count_handler(MESSAGES_COUNT)
    count_responses = count_handler(RESPONSES_COUNT)

    @app.post(
        "/v1/messages/count_tokens",
        openapi_extra=COUNT_OPENAPI,
        responses=COUNT_REPLIES,
        response_class=Response,
        summary="Count a Messages request's input tokens (Anthropic's count_tokens; nothing is generated)",
    )
    async def count_tokens(request: Request) -> Response:
        return _RawResponse(count_messages, gateway)

    @app.post(
        "/v1/responses/input_tokens",
        openapi_extra=INPUT_TOKENS_OPENAPI,
        responses=INPUT_TOKENS_REPLIES,
        response_class=Response,
        summary="Count a Responses request's input tokens (OpenAI's input token count; nothing is generated)",
    )
    async def input_tokens(request: Request) -> Response:
        return _RawResponse(count_responses, gateway)


def _add_stored_response_routes(app: FastAPI, gateway: Gateway) -> None:
    """Retrieve, delete, cancel and input items of a stored Response: ATP stores none (OpenAI's 404)."""
    replies = schemas.STORED_RESPONSE_REPLIES

    @app.get("/v1/responses/{response_id}", responses=replies, response_class=Response)
    async def retrieve_response(response_id: str, request: Request) -> Response:
        return _RawResponse(stored_response(response_id), gateway)

    @app.delete("/v1/responses/{response_id}", responses=replies, response_class=Response)
    async def delete_response(response_id: str, request: Request) -> Response:
        return _RawResponse(stored_response(response_id), gateway)

    @app.post("/v1/responses/{response_id}/cancel", responses=replies, response_class=Response)
    async def cancel_response(response_id: str, request: Request) -> Response:
        return _RawResponse(stored_response(response_id), gateway)

    @app.get("/v1/responses/{response_id}/input_items", responses=replies, response_class=Response)
    async def response_input_items(response_id: str, request: Request) -> Response:
        return _RawResponse(stored_response(response_id), gateway)


def _add_resource_routes(app: FastAPI, gateway: Gateway) -> None:
    """The model list, feedback and the WebSocket."""

    @app.get(
        "/v1/models",
        openapi_extra=schemas.MODELS_OPENAPI,
        responses=schemas.MODELS_RESPONSES,
        response_class=Response,
        summary="List the models and routes the calling key's tenant may use",
    )
    async def list_models(request: Request) -> Response:
        return _RawResponse(handle_models, gateway)

    @app.get(
        "/v1/models/{model_id:path}",
        openapi_extra=schemas.MODELS_OPENAPI,
        responses=schemas.MODEL_RESPONSES,
        response_class=Response,
        summary="One model or route the calling key's tenant may use",
    )
    async def get_model(model_id: str, request: Request) -> Response:
        return _RawResponse(handle_model(model_id), gateway)

    @app.post(
        "/v1/feedback",
        openapi_extra=schemas.FEEDBACK_OPENAPI,
        responses=schemas.FEEDBACK_RESPONSES,
        response_class=Response,
        summary="Score a decision (the x-atp-decision-id of a reply) from 0 to 1",
    )
    async def feedback(request: Request) -> Response:
        return _RawResponse(_feedback, gateway)

    app.include_router(admin_router(gateway))
    mount_console(app, gateway)

    @app.websocket("/v1/ws")
    async def websocket(websocket: WebSocket) -> None:
        await handle_websocket(gateway, websocket)


def _add_probes(app: FastAPI, gateway: Gateway) -> None:
    """Liveness, readiness, startup and a health summary."""
    probe: dict[int | str, dict[str, Any]] = {
        "200": {"description": "OK"},
        "503": {"description": "Not ready"},
    }

    @app.get("/livez", responses={"200": {"description": "The process is alive"}})
    async def livez() -> Response:
        return _json(200, {"status": "ok"})

    @app.get("/readyz", responses=probe)
    async def readyz() -> Response:
        if gateway.ready:
            return _json(200, {"status": "ready"})
        return _json(503, {"status": "draining" if gateway.draining else "not ready"})

    @app.get("/startupz", responses=probe)
    async def startupz() -> Response:
        return _json(
            200 if gateway.started else 503, {"status": "started" if gateway.started else "starting"}
        )

    @app.get("/healthz", responses={"200": {"description": "Summary of the gateway's state"}})
    async def healthz() -> Response:
        adapters_serving = gateway.adapters is not None and gateway.adapters.serving
        status = "draining" if gateway.draining else ("ok" if gateway.ready else "degraded")
        return _json(
            200,
            {
                "status": status,
                "started": gateway.started,
                "draining": gateway.draining,
                "adapters": "serving" if adapters_serving else "not serving",
                "websockets": len(gateway.websockets),
                "tenants": len(gateway.config.tenants),
                # Keys and revocations come from this store; while it is unreachable the last state holds.
                "directory": {
                    "store": gateway.directory.store.name if gateway.directory else "config",
                    "reachable": gateway.directory.healthy if gateway.directory else True,
                    "version": gateway.directory.directory.version if gateway.directory else "",
                },
                "config": gateway.config.digest(),
            },
        )


def _add_error_handlers(app: FastAPI) -> None:
    # Every error leaves in OpenAI's format, including FastAPI's and Starlette's own.
    async def on_atp_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, AtpError)
        return _error_response(exc, request)

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        param = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        return _error_response(
            InvalidArgument(f"Invalid request: {first.get('msg', 'invalid')}.", param=param), request
        )

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 404:
            return _error_response(NotFound(f"Unknown path: {request.url.path}"), request)
        code = "method_not_allowed" if exc.status_code == 405 else "http_error"
        error = {"message": str(exc.detail), "type": "invalid_request_error"}
        if "anthropic-version" in request.headers:
            body: dict[str, Any] = {"type": "error", "error": error}
        else:
            body = {"error": {**error, "param": None, "code": code}}
        return _json(exc.status_code, body, dict(exc.headers or {}))

    async def on_unexpected(_request: Request, exc: Exception) -> Response:
        log.error("unhandled error", exc_info=exc)
        return _error_response(Internal("internal error"))

    app.add_exception_handler(AtpError, on_atp_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)


def _customize_openapi(app: FastAPI) -> None:
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        components = schema.setdefault("components", {})
        components.setdefault("schemas", {}).update(schemas.OPENAPI_COMPONENTS)
        components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
