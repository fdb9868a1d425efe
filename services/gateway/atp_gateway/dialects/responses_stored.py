"""Retrieve, delete, cancel and input items of a stored Response: ATP stores none, and says so as OpenAI would."""

from __future__ import annotations

import time
from typing import Any

from atp_common.errors import AtpError, NotFound
from atp_gateway import metrics
from atp_gateway.asgi import Receive, RequestHeaders, Scope, Send, send_error
from atp_gateway.auth import api_key_from_headers
from atp_gateway.gateway import Gateway

__all__ = ["stored_response"]


def stored_response(response_id: str) -> Any:
    """The handler for one response id: 401 without a valid key, else OpenAI's 404 for an unknown id."""

    async def handler(gateway: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        headers = RequestHeaders(scope)
        reply_headers = [(b"x-request-id", headers.request_id.encode())]
        try:
            gateway.keys.authenticate(api_key_from_headers(headers.authorization, headers.api_key))
            raise NotFound(
                f"No response found with id '{response_id[:128]}': ATP does not store responses "
                "(every response is created with store: false); keep the conversation and send it in 'input'.",
                param="response_id",
            )
        except AtpError as exc:
            status = (await send_error(send, exc, reply_headers)).status
        metrics.observe("responses_stored", status, time.perf_counter() - started)

    return handler
