"""One call to the adapters as the exchange reads it: cancelled when the client leaves, older adapters' fallbacks."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import Any

from grpc import aio

from atp.adapters.v1 import adapters_pb2
from atp_common.errors import AtpError
from atp_gateway.asgi import Receive
from atp_gateway.errors import check_complete_reply, error_from_rpc
from atp_gateway.multiplex import MuxCall
from atp_gateway.upstream import AdaptersCall, AdaptersClient, whole_reply

__all__ = ["ClientGone", "UpstreamCall", "complete", "first_message"]


class ClientGone(Exception):
    """The client disconnected; the upstream call has been cancelled."""


class UpstreamCall:
    """One call to the adapters in flight (Generate for a stream, Complete otherwise) and, over HTTP, the
    task that notices the client leaving and cancels it."""

    __slots__ = ("call", "completed", "disconnected", "kept", "watcher")

    def __init__(self, call: AdaptersCall, receive: Receive | None):
        self.call = call
        self.disconnected = False
        # Set once the completion has arrived: from then on a disconnect has nothing left to cancel (and
        # uvicorn reports one as soon as the reply is complete).
        self.completed = False
        # A stream the adapters said they hold in their cache: its messages merged, for this worker's copy.
        self.kept: adapters_pb2.GenerateResponse | None = None
        self.watcher = asyncio.create_task(self._watch(receive)) if receive is not None else None

    async def _watch(self, receive: Receive) -> None:
        # The body has been read, so the next ASGI message is the disconnect. Cancelling the call here
        # stops the provider request at once instead of at the next chunk we fail to write.
        while (await receive())["type"] != "http.disconnect":
            pass
        self.disconnected = True
        if not self.completed:
            self.call.cancel()

    def _gone(self) -> bool:
        """Whether a CancelledError in this task came from the watcher cancelling the call (the client
        left), not from this task being cancelled."""
        task = asyncio.current_task()
        return self.disconnected and task is not None and not task.cancelling()

    async def read(self) -> adapters_pb2.GenerateResponse | None:
        """The next message of a Generate call; None at its end; ClientGone when the client left."""
        assert not isinstance(self.call, aio.UnaryUnaryCall)
        try:
            message: adapters_pb2.GenerateResponse = await self.call.read()
        except asyncio.CancelledError:
            if self._gone():
                raise ClientGone from None
            raise
        if message is aio.EOF:
            return None
        if self.kept is not None:
            self.kept.MergeFrom(message)
        return message

    async def reply(self) -> adapters_pb2.GenerateResponse:
        """The whole reply of a non-streamed request (whole_reply); ClientGone when the client left."""
        try:
            return await whole_reply(self.call)
        except asyncio.CancelledError:
            if self._gone():
                raise ClientGone from None
            raise

    async def limit_values(self, header: adapters_pb2.GenerateHeader) -> Iterable[tuple[str, Any]]:
        """The call's x-ratelimit-* values, from the reply's header (or, until 2027-03-01, the metadata
        older adapters sent them in: design notes, "Rate-limit values in the header")."""
        if header.rate_limits:
            return [(name, value) for name, value in header.rate_limits.items()]
        if isinstance(self.call, MuxCall):
            return ()
        call: Any = self.call
        metadata: aio.Metadata | None = await (
            call.initial_metadata() if isinstance(call, aio.UnaryStreamCall) else call.trailing_metadata()
        )
        return metadata or ()

    async def finish(self) -> None:
        """After a stream's completion: read the stream's end, so the call ends OK rather than cancelled
        (the adapters then record it as served and skip their cancellation path); one read, the server
        ends the stream right after the completion."""
        with contextlib.suppress(aio.AioRpcError, ClientGone):
            await self.read()

    def close(self) -> None:
        if self.watcher is not None:
            self.watcher.cancel()
        self.call.cancel()


async def complete(
    adapters: AdaptersClient, request: adapters_pb2.GenerateRequest, receive: Receive | None
) -> tuple[adapters_pb2.GenerateResponse, UpstreamCall]:
    """A non-streamed request's checked reply: one call on the Multiplex stream, or Complete, or Generate
    against adapters without them (a rolling upgrade). The caller closes the returned call."""
    upstream = UpstreamCall(adapters.complete(request), receive)
    try:
        # At most two fallbacks: Multiplex to Complete, Complete to Generate.
        for attempt in range(3):
            try:
                reply = await upstream.reply()
                break
            except aio.AioRpcError as exc:
                if attempt == 2 or not adapters.lacks_method(exc, upstream.call):
                    raise
                upstream.close()
                upstream = UpstreamCall(adapters.complete(request), receive)
    except aio.AioRpcError as exc:
        upstream.close()
        raise error_from_rpc(exc, generating=True) from None
    except BaseException:
        upstream.close()
        raise
    upstream.completed = True
    try:
        check_complete_reply(reply)
    except AtpError:
        upstream.close()
        raise
    return reply, upstream


async def first_message(
    adapters: AdaptersClient, request: adapters_pb2.GenerateRequest, upstream: UpstreamCall, receive: Receive
) -> tuple[UpstreamCall, adapters_pb2.GenerateResponse | None]:
    """A stream's first message, sent again as a call of its own when the adapters lack Multiplex (a
    rolling upgrade); returns the call it came on. AioRpcError when the call failed."""
    try:
        return upstream, await upstream.read()
    except aio.AioRpcError as exc:
        if not adapters.lacks_method(exc, upstream.call):
            raise
    upstream.close()
    upstream = UpstreamCall(adapters.generate(request), receive)
    return upstream, await upstream.read()
