"""Answering an exact-match cache hit from this worker's copy, as the adapters would, and reporting it."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from atp.adapters.v1 import adapters_pb2
from atp_common.cache_entries import replay
from atp_gateway import metrics
from atp_gateway.asgi import Send, send_json
from atp_gateway.cache_copy import CopiedReply
from atp_gateway.gateway import Gateway
from atp_gateway.reply_headers import add_route_headers

if TYPE_CHECKING:
    from atp_gateway.exchange import ReplyEncoder

__all__ = ["copied_reply", "replayed", "report_hit", "send_copy"]

# A hit found in the copy that the adapters answer instead, since it could not be reported now.
_UNREPORTABLE = metrics.CACHE_COPY.labels("unreportable")


def copied_reply(gateway: Gateway, request: adapters_pb2.GenerateRequest) -> CopiedReply | None:
    """The copy that answers `request` here, when one may: held, unexpired, for a principal the copy may
    serve, and with room to report the hit (else the adapters answer, and observe, it)."""
    copy = gateway.cache_copy
    if not copy.enabled:
        return None
    # Looked up even when the hit could not be reported: a refresh must still drop the copy it replaces.
    copied = copy.lookup(request)[1]
    if copied is None:
        return None
    reporter = gateway.hit_reports
    if reporter is None or not reporter.reserve(_report_size(copied, request)):
        _UNREPORTABLE.inc()
        return None
    return copied


def _report_size(copied: CopiedReply, request: adapters_pb2.GenerateRequest) -> int:
    # What the hit's report will hold (the request, the stored header, a few numbers and an id), reserved
    # when the copy answers and released when the report is queued.
    size: int = request.ByteSize() + copied.reply.header.ByteSize()
    return size + 64


def replayed(copied: CopiedReply, request: adapters_pb2.GenerateRequest) -> adapters_pb2.GenerateResponse:
    """The hit's reply as one message (header, deltas, completion): the adapters' replay of the entry."""
    messages = replay(copied.reply, request, request.request_id)
    reply = messages[0]
    for message in messages[1:]:
        reply.MergeFrom(message)
    return reply


async def send_copy(
    copied: CopiedReply,
    request: adapters_pb2.GenerateRequest,
    encoder: ReplyEncoder,
    stream_headers: tuple[tuple[bytes, bytes], ...],
    reply_headers: list[tuple[bytes, bytes]],
    send: Send,
    started: float,
) -> int:
    """The hit over HTTP: the JSON body, or the whole stream in one write, with the headers an
    adapters-served hit gets (no x-ratelimit-*: the copy serves only principals without limits)."""
    reply = replayed(copied, request)
    add_route_headers(reply_headers, reply.header)
    if not request.stream:
        body = encoder.whole(reply)
        overhead = metrics.overhead_seconds(started, 0.0)
        metrics.OVERHEAD_JSON.observe(overhead)
        reply_headers.append(metrics.overhead_header(overhead))
        await send_json(send, 200, body, reply_headers)
        return 200
    await send({"type": "http.response.start", "status": 200, "headers": [*stream_headers, *reply_headers]})
    body = encoder.start(reply.header) + encoder.deltas(reply.deltas) + encoder.finish(reply.completion)
    await send({"type": "http.response.body", "body": body})
    metrics.OVERHEAD_SSE.observe(metrics.overhead_seconds(started, 0.0))
    return 200


def report_hit(
    gateway: Gateway, request: adapters_pb2.GenerateRequest, copied: CopiedReply, started: float
) -> None:
    """Queue the served hit for the adapters, who observe it as one of their own hits."""
    reporter = gateway.hit_reports
    if reporter is None:
        return
    elapsed_s = time.perf_counter() - started
    reporter.add(
        adapters_pb2.CacheHit(
            request=request,
            stored=copied.reply.header,
            saved_cost_usd=copied.saved_cost_usd,
            started_at_unix_ns=time.time_ns() - int(elapsed_s * 1e9),
            latency_ms=elapsed_s * 1000.0,
            observation_id=os.urandom(16).hex(),
        ),
        reserved=_report_size(copied, request),
    )
