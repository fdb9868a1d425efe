"""The FastAPI application class with a direct route for chat completions, the one hot endpoint."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from atp_gateway.asgi import Receive, Scope, Send
from atp_gateway.chat import handle_chat
from atp_gateway.gateway import Gateway

__all__ = ["GatewayApp"]

CHAT_PATH = "/v1/chat/completions"


class GatewayApp(FastAPI):
    """FastAPI, except that POST /v1/chat/completions goes straight to `handle_chat`.

    Why: Starlette's middleware stack, routing and FastAPI's request handling cost about a tenth of the
    gateway's CPU per chat request (py-spy under wrk load), and the chat handler needs none of it: it
    reads the raw ASGI triple and never raises. Every other path, and chat itself when tracing is on (the
    OpenTelemetry middleware wraps the FastAPI stack), goes through FastAPI as before; the route stays
    declared there for the OpenAPI document.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.chat_gateway: Gateway | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gateway = self.chat_gateway
        if (
            gateway is not None
            and scope["type"] == "http"
            and scope["path"] == CHAT_PATH
            and scope["method"] == "POST"
            and not scope.get("root_path")
        ):
            await handle_chat(gateway, scope, receive, send)
            return
        await super().__call__(scope, receive, send)
