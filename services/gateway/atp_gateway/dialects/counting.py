"""POST /v1/messages/count_tokens: Anthropic's token count, by the provider that would serve the request."""

from __future__ import annotations

import contextlib
import logging
import time

import grpc
import orjson
from grpc import aio

from atp_common.errors import AtpError, Cancelled, Internal, Unavailable
from atp_gateway import metrics
from atp_gateway.asgi import Receive, RequestHeaders, Scope, Send, send_json
from atp_gateway.dialects.messages import parse_checked
from atp_gateway.dialects.messages_errors import messages_error_reply
from atp_gateway.embeddings import watched
from atp_gateway.errors import error_from_rpc
from atp_gateway.exchange import CLIENT_GONE, Caller, admit, stamp
from atp_gateway.gateway import Gateway

log = logging.getLogger("atp.gateway.count_tokens")

__all__ = ["handle_count_tokens"]

ENDPOINT = "messages_count_tokens"


async def handle_count_tokens(gateway: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    """The whole exchange, Anthropic's errors included; never raises."""
    started = time.perf_counter()
    headers = RequestHeaders(scope)
    reply_headers = [(b"x-request-id", headers.request_id.encode())]
    status = 500
    try:
        principal, body = await admit(gateway, headers, receive)
        caller = Caller(principal, headers.request_id, headers, scope)
        request = parse_checked(body, caller, counting=True)
        stamp(request, caller, "messages")
        if gateway.adapters is None:
            raise Unavailable("The gateway is starting.")
        call = gateway.adapters.count_tokens(request)
        try:
            reply = await watched(call, receive)
        except aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                # Adapters older than CountTokens (a rolling upgrade): not a fault of the request.
                raise Unavailable("These adapters do not count tokens yet; retry shortly.") from None
            raise error_from_rpc(exc) from None
        reply_headers.append((b"x-atp-decision-id", reply.decision_id.encode()))
        reply_headers.append((b"x-atp-model", reply.model.encode()))
        reply_headers.append((b"x-atp-deployment", reply.deployment.encode()))
        await send_json(send, 200, orjson.dumps({"input_tokens": reply.input_tokens}), reply_headers)
        status = 200
    except Cancelled:
        status = CLIENT_GONE
    except AtpError as exc:
        status = await _send_error(send, exc, reply_headers)
    except OSError:
        status = CLIENT_GONE
    except Exception:
        log.exception("count_tokens request failed", extra={"request_id": headers.request_id})
        with contextlib.suppress(Exception):
            status = await _send_error(send, Internal("internal error"), reply_headers)
    finally:
        metrics.observe(ENDPOINT, status, time.perf_counter() - started)


async def _send_error(send: Send, exc: AtpError, headers: list[tuple[bytes, bytes]]) -> int:
    reply = messages_error_reply(exc)
    await send_json(send, reply.status, reply.body, [*headers, *reply.headers])
    return reply.status
