"""POST /v1/chat/completions: the chat dialect over the one exchange (atp_gateway.exchange)."""

from __future__ import annotations

from atp_gateway.asgi import Receive, Scope, Send
from atp_gateway.dialects.chat import CHAT
from atp_gateway.exchange import serve
from atp_gateway.gateway import Gateway

__all__ = ["handle_chat"]


async def handle_chat(gateway: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    """The whole exchange; never raises (every failure becomes an OpenAI error reply or event)."""
    await serve(CHAT, gateway, scope, receive, send)
