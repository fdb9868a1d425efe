"""The one server interceptor that turns ATP errors (and surprises) into gRPC statuses, and counts calls."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from grpc import aio

from atp_common.errors import AtpError, error_metadata
from atp_common.metrics import GRPC_REQUESTS, GRPC_SECONDS

log = logging.getLogger("atp.grpc")


class MethodSeries:
    """The metric children of one method, bound once: per call, a lookup by code and two updates (also
    for calls carried inside another, as the adapters' Multiplex carries Generate and Complete)."""

    __slots__ = ("_counters", "_method", "seconds")

    def __init__(self, method: str) -> None:
        self._method = method
        self._counters: dict[str, Any] = {}
        self.seconds = GRPC_SECONDS.labels(method)

    def done(self, code: str, started: float) -> None:
        counter = self._counters.get(code)
        if counter is None:
            # Codes are a fixed enum, so this dict stays small.
            counter = self._counters[code] = GRPC_REQUESTS.labels(self._method, code)
        counter.inc()
        self.seconds.observe(time.perf_counter() - started)


def _code_of(exc: BaseException, context: aio.ServicerContext) -> str:
    if isinstance(exc, AtpError):
        name: str = exc.mapping.grpc_code.name
        return name
    if isinstance(exc, asyncio.CancelledError):
        return "CANCELLED"
    if isinstance(exc, aio.AbortError):
        code = context.code()
        return code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
    if _not_served(exc, context):
        return "UNIMPLEMENTED"
    return "INTERNAL"


def _not_served(exc: BaseException, context: aio.ServicerContext) -> bool:
    """A generated servicer's default method: it sets UNIMPLEMENTED and raises NotImplementedError, which
    means the method is not served here (as if it were not registered), not a bug."""
    return isinstance(exc, NotImplementedError) and context.code() == grpc.StatusCode.UNIMPLEMENTED


async def _abort(context: aio.ServicerContext, exc: BaseException, method: str) -> None:
    if isinstance(exc, AtpError):
        context.set_trailing_metadata(error_metadata(exc))
        await context.abort(exc.mapping.grpc_code, exc.message)
    if _not_served(exc, context):
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not implemented!")
    # Anything else is a bug: log it with its traceback here, and never send internals to the caller.
    log.error("unhandled error in %s", method, exc_info=exc)
    await context.abort(grpc.StatusCode.INTERNAL, "internal error")


def _wrap_unary(behavior: Callable[..., Awaitable[Any]], method: str) -> Callable[..., Awaitable[Any]]:
    series = MethodSeries(method)

    async def handler(request_or_iterator: Any, context: aio.ServicerContext) -> Any:
        started = time.perf_counter()
        try:
            reply = await behavior(request_or_iterator, context)
        except aio.AbortError as exc:
            series.done(_code_of(exc, context), started)
            raise
        except asyncio.CancelledError:
            series.done("CANCELLED", started)
            raise
        except Exception as exc:
            series.done(_code_of(exc, context), started)
            await _abort(context, exc, method)
        else:
            series.done("OK", started)
            return reply

    return handler


def _wrap_stream(
    behavior: Callable[..., AsyncIterator[Any]], method: str
) -> Callable[..., AsyncIterator[Any]]:
    series = MethodSeries(method)

    async def handler(request_or_iterator: Any, context: aio.ServicerContext) -> AsyncIterator[Any]:
        started = time.perf_counter()
        try:
            async for response in behavior(request_or_iterator, context):
                yield response
        except aio.AbortError as exc:
            series.done(_code_of(exc, context), started)
            raise
        except (asyncio.CancelledError, GeneratorExit):
            # The caller went away (or the server stopped) while the stream was open.
            series.done("CANCELLED", started)
            raise
        except Exception as exc:
            series.done(_code_of(exc, context), started)
            await _abort(context, exc, method)
        else:
            series.done("OK", started)

    return handler


class ErrorInterceptor(aio.ServerInterceptor):
    """Maps AtpError subclasses to their status code with trailing metadata, and hides unexpected errors."""

    def __init__(self) -> None:
        self._cache: dict[str, grpc.RpcMethodHandler | None] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        # Handlers are fixed per method, so wrap each once rather than on every call.
        if method in self._cache:
            cached = self._cache[method]
            if cached is not None:
                return cached
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        wrapped = _wrap_handler(handler, method)
        self._cache[method] = wrapped
        return wrapped


def _wrap_handler(handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
    common = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(_wrap_unary(handler.unary_unary, method), **common)
    if handler.unary_stream:
        # A streaming handler is either an async generator or a coroutine that calls context.write()
        # (the library's health Watch is the latter); each needs its own wrapper.
        wrap = _wrap_stream if inspect.isasyncgenfunction(handler.unary_stream) else _wrap_unary
        return grpc.unary_stream_rpc_method_handler(wrap(handler.unary_stream, method), **common)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(_wrap_unary(handler.stream_unary, method), **common)
    wrap = _wrap_stream if inspect.isasyncgenfunction(handler.stream_stream) else _wrap_unary
    return grpc.stream_stream_rpc_method_handler(wrap(handler.stream_stream, method), **common)
