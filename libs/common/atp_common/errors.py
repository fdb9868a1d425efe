"""ATP's one error tree, with the single table that maps it to gRPC, HTTP and WebSocket codes."""

from __future__ import annotations

from dataclasses import dataclass

import grpc


@dataclass(frozen=True, slots=True)
class ErrorMapping:
    """How one kind of error shows on each surface."""

    grpc_code: grpc.StatusCode
    http_status: int
    openai_type: str
    # WebSocket close code when the error ends the whole socket; per-request errors are messages instead.
    ws_close_code: int


class AtpError(Exception):
    """Base of every error ATP raises on purpose. Servicers raise these; one interceptor maps them."""

    mapping = ErrorMapping(grpc.StatusCode.INTERNAL, 500, "server_error", 1011)

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        retry_after: float | None = None,
        headers: tuple[tuple[str, str], ...] = (),
        reason: str | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.param = param
        self.retry_after = retry_after
        # What exactly went wrong, in OpenAI's code words, where the class says less: a provider's own
        # code (`string_above_max_length`), or CONTEXT_LENGTH_EXCEEDED whoever said it.
        self.reason = reason
        # Reply headers that explain the error to an HTTP client (x-ratelimit-* on a refusal).
        self.headers = headers

    @property
    def code(self) -> str:
        """The OpenAI-style error code: the class name in snake case."""
        name = type(self).__name__
        return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


class InvalidArgument(AtpError):
    mapping = ErrorMapping(grpc.StatusCode.INVALID_ARGUMENT, 400, "invalid_request_error", 1007)


class PayloadTooLarge(AtpError):
    mapping = ErrorMapping(grpc.StatusCode.INVALID_ARGUMENT, 413, "invalid_request_error", 1009)


class NotFound(AtpError):
    mapping = ErrorMapping(grpc.StatusCode.NOT_FOUND, 404, "not_found_error", 1008)


class Unauthenticated(AtpError):
    mapping = ErrorMapping(grpc.StatusCode.UNAUTHENTICATED, 401, "authentication_error", 1008)


class PermissionDenied(AtpError):
    mapping = ErrorMapping(grpc.StatusCode.PERMISSION_DENIED, 403, "permission_error", 1008)


class RateLimited(AtpError):
    mapping = ErrorMapping(grpc.StatusCode.RESOURCE_EXHAUSTED, 429, "rate_limit_error", 1013)


class BudgetExceeded(AtpError):
    # OpenAI answers an exhausted quota with 429 and type/code insufficient_quota, so SDKs see it that way.
    mapping = ErrorMapping(grpc.StatusCode.FAILED_PRECONDITION, 429, "insufficient_quota", 1008)


class Conflict(AtpError):
    mapping = ErrorMapping(grpc.StatusCode.ALREADY_EXISTS, 409, "invalid_request_error", 1008)


class Unavailable(AtpError):
    mapping = ErrorMapping(grpc.StatusCode.UNAVAILABLE, 503, "server_error", 1013)


class UpstreamError(AtpError):
    """A provider answered with an error that failover could not get around."""

    mapping = ErrorMapping(grpc.StatusCode.UNAVAILABLE, 502, "upstream_error", 1011)


class DeadlineExceeded(AtpError):
    mapping = ErrorMapping(grpc.StatusCode.DEADLINE_EXCEEDED, 504, "timeout_error", 1011)


class Cancelled(AtpError):
    mapping = ErrorMapping(grpc.StatusCode.CANCELLED, 499, "cancelled", 1000)


class Internal(AtpError):
    mapping = ErrorMapping(grpc.StatusCode.INTERNAL, 500, "server_error", 1011)


class ConfigError(AtpError):
    """The configuration or settings are invalid; raised at start-up."""

    mapping = ErrorMapping(grpc.StatusCode.FAILED_PRECONDITION, 500, "server_error", 1011)


# Every class of the tree, most general use first (peers rebuilding an error by its code take the first).
ERROR_CLASSES: tuple[type[AtpError], ...] = (
    InvalidArgument,
    PayloadTooLarge,
    NotFound,
    Unauthenticated,
    PermissionDenied,
    RateLimited,
    BudgetExceeded,
    Conflict,
    Unavailable,
    UpstreamError,
    DeadlineExceeded,
    Cancelled,
    Internal,
    ConfigError,
)
_BY_NAME: dict[str, type[AtpError]] = {cls.__name__: cls for cls in ERROR_CLASSES}
# When a peer sends a bare status (no ATP metadata), map the code to the closest class.
_BY_GRPC_CODE: dict[grpc.StatusCode, type[AtpError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.RESOURCE_EXHAUSTED: RateLimited,
    grpc.StatusCode.FAILED_PRECONDITION: BudgetExceeded,
    grpc.StatusCode.ALREADY_EXISTS: Conflict,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.CANCELLED: Cancelled,
}

# A prompt (with its max tokens) larger than the model's context window, however the provider said it.
CONTEXT_LENGTH_EXCEEDED = "context_length_exceeded"

# Trailing metadata keys that carry an AtpError across a gRPC hop without losing its class.
ERROR_CLASS_KEY = "atp-error-class"
ERROR_PARAM_KEY = "atp-error-param"
ERROR_REASON_KEY = "atp-error-reason"
RETRY_AFTER_KEY = "retry-after"
# Error headers that travel with the error across services (as trailing metadata) to the HTTP reply.
ERROR_HEADER_PREFIXES = ("x-ratelimit-",)


def error_metadata(error: AtpError) -> tuple[tuple[str, str], ...]:
    """Trailing metadata that lets the peer rebuild `error` exactly."""
    items = [(ERROR_CLASS_KEY, type(error).__name__)]
    if error.param:
        items.append((ERROR_PARAM_KEY, error.param))
    if error.reason:
        items.append((ERROR_REASON_KEY, error.reason))
    if error.retry_after is not None:
        items.append((RETRY_AFTER_KEY, f"{error.retry_after:.3f}"))
    items += (item for item in error.headers if item[0].startswith(ERROR_HEADER_PREFIXES))
    return tuple(items)


def from_rpc_error(exc: grpc.aio.AioRpcError) -> AtpError:
    """Turn a failed call into the typed error the server raised (or the closest one for its code)."""
    trailers = {k: v for k, v in (exc.trailing_metadata() or ()) if isinstance(v, str)}
    cls = _BY_NAME.get(trailers.get(ERROR_CLASS_KEY, "")) or _BY_GRPC_CODE.get(exc.code(), Internal)
    retry_after = trailers.get(RETRY_AFTER_KEY)
    return cls(
        exc.details() or exc.code().name.lower(),
        param=trailers.get(ERROR_PARAM_KEY),
        reason=trailers.get(ERROR_REASON_KEY),
        retry_after=float(retry_after) if retry_after else None,
        headers=tuple((k, v) for k, v in trailers.items() if k.startswith(ERROR_HEADER_PREFIXES)),
    )


def error_class_named(name: str) -> type[AtpError]:
    """The error class with this name, or Internal."""
    return _BY_NAME.get(name, Internal)


class StartupError(RuntimeError):
    """A service cannot start (a port taken, say): its entry point logs it in one line and exits 1."""

    @classmethod
    def unbound(cls, address: str, why: str) -> StartupError:
        """A listener that could not bind `address` (host:port, and what it is for when not the service)."""
        return cls(f"cannot listen on {address}: {why}")
