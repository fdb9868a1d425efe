"""Input token counts (Anthropic's count_tokens, OpenAI's responses/input_tokens): one handler, two dialects."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc
import orjson
from grpc import aio

from atp.adapters.v1 import adapters_pb2
from atp_common.errors import AtpError, Cancelled, Internal, Unavailable
from atp_gateway import metrics
from atp_gateway.asgi import Receive, RequestHeaders, Scope, Send, send_json
from atp_gateway.dialects.json_fields import MESSAGE_SOURCES
from atp_gateway.dialects.messages import parse_checked
from atp_gateway.dialects.messages_errors import messages_error_reply
from atp_gateway.dialects.responses_errors import responses_error_reply
from atp_gateway.dialects.responses_request import parse_responses_request
from atp_gateway.embeddings import watched
from atp_gateway.errors import ErrorReply, error_from_rpc
from atp_gateway.exchange import CLIENT_GONE, Caller, admit, stamp
from atp_gateway.gateway import Gateway

log = logging.getLogger("atp.gateway.count_tokens")

__all__ = ["MESSAGES_COUNT", "RESPONSES_COUNT", "count_handler"]

Handler = Callable[[Gateway, Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class TokenCount:
    """A dialect's count endpoint: how its body becomes the request counted, and how the count is said."""

    endpoint: str
    dialect: str
    parse: Callable[[bytes, Caller], adapters_pb2.GenerateRequest]
    reply: Callable[[int], dict[str, object]]
    error_reply: Callable[[AtpError], ErrorReply]


def _parse_responses(body: bytes, caller: Caller) -> adapters_pb2.GenerateRequest:
    MESSAGE_SOURCES.set(())
    request, options = parse_responses_request(body, counting=True)
    MESSAGE_SOURCES.set(options.sources)
    return request


MESSAGES_COUNT = TokenCount(
    "messages_count_tokens",
    "messages",
    lambda body, caller: parse_checked(body, caller, counting=True),
    lambda tokens: {"input_tokens": tokens},
    messages_error_reply,
)
RESPONSES_COUNT = TokenCount(
    "responses_input_tokens",
    "responses",
    _parse_responses,
    lambda tokens: {"object": "response.input_tokens", "input_tokens": tokens},
    responses_error_reply,
)


def count_handler(count: TokenCount) -> Handler:
    """The whole exchange for `count`, its dialect's errors included; the handler never raises."""

    async def handle(gateway: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        headers = RequestHeaders(scope)
        reply_headers = [(b"x-request-id", headers.request_id.encode())]
        status = 500
        try:
            reply = await _count(gateway, count, headers, scope, receive)
            reply_headers.append((b"x-atp-decision-id", reply.decision_id.encode()))
            reply_headers.append((b"x-atp-model", reply.model.encode()))
            reply_headers.append((b"x-atp-deployment", reply.deployment.encode()))
            await send_json(send, 200, orjson.dumps(count.reply(reply.input_tokens)), reply_headers)
            status = 200
        except Cancelled:
            status = CLIENT_GONE
        except AtpError as exc:
            status = await _send_error(send, count.error_reply(exc), reply_headers)
        except OSError:
            status = CLIENT_GONE
        except Exception:
            log.exception("token count failed", extra={"request_id": headers.request_id})
            with contextlib.suppress(Exception):
                status = await _send_error(send, count.error_reply(Internal("internal error")), reply_headers)
        finally:
            metrics.observe(count.endpoint, status, time.perf_counter() - started)

    return handle


async def _count(
    gateway: Gateway, count: TokenCount, headers: RequestHeaders, scope: Scope, receive: Receive
) -> adapters_pb2.CountTokensResponse:
    principal, body = await admit(gateway, headers, receive)
    caller = Caller(principal, headers.request_id, headers, scope)
    request = count.parse(body, caller)
    stamp(request, caller, count.dialect)
    if gateway.adapters is None:
        raise Unavailable("The gateway is starting.")
    try:
        reply: adapters_pb2.CountTokensResponse = await watched(
            gateway.adapters.count_tokens(request), receive
        )
        return reply
    except aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
            # Adapters older than CountTokens (a rolling upgrade): not a fault of the request.
            raise Unavailable("These adapters do not count tokens yet; retry shortly.") from None
        raise error_from_rpc(exc) from None


async def _send_error(send: Send, reply: ErrorReply, headers: list[tuple[bytes, bytes]]) -> int:
    await send_json(send, reply.status, reply.body, [*headers, *reply.headers])
    return reply.status
