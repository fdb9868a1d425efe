"""The gateway's one error table: ATP errors, gRPC statuses and validation failures as OpenAI error bodies."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from typing import Any

import grpc
import orjson
from pydantic import ValidationError

from atp.adapters.v1 import adapters_pb2
from atp.common.v1 import chat_pb2
from atp_common.errors import (
    ERROR_CLASS_KEY,
    ERROR_CLASSES,
    AtpError,
    BudgetExceeded,
    DeadlineExceeded,
    Internal,
    InvalidArgument,
    NotFound,
    RateLimited,
    Unauthenticated,
    Unavailable,
    from_rpc_error,
)

log = logging.getLogger("atp.gateway.errors")

__all__ = [
    "ErrorReply",
    "check_complete_reply",
    "error_from_generate",
    "error_from_rpc",
    "error_from_validation",
    "error_reply",
    "openai_error",
    "param_as_sent",
]

# Where OpenAI's own type and code differ from ATP's defaults for a class, clients branch on OpenAI's
# (the SDKs and LangChain look for `model_not_found` and `invalid_api_key`). Keyed by (class, param).
_OPENAI_OVERRIDES: dict[tuple[type[AtpError], str | None], tuple[str, str]] = {
    (NotFound, "model"): ("invalid_request_error", "model_not_found"),
    (Unauthenticated, None): ("invalid_request_error", "invalid_api_key"),
    (RateLimited, None): ("rate_limit_error", "rate_limit_exceeded"),
    (BudgetExceeded, None): ("insufficient_quota", "insufficient_quota"),
}

# A mid-stream GenerateError carries a gRPC code name and an OpenAI type; this rebuilds the ATP class.
_CLASSES_BY_CODE: dict[str, type[AtpError]] = {}
_CLASSES_BY_CODE_AND_TYPE: dict[tuple[str, str], type[AtpError]] = {}
for _cls in ERROR_CLASSES:
    _CLASSES_BY_CODE.setdefault(_cls.mapping.grpc_code.name, _cls)
    _CLASSES_BY_CODE_AND_TYPE.setdefault((_cls.mapping.grpc_code.name, _cls.mapping.openai_type), _cls)


def openai_error(exc: AtpError) -> tuple[int, dict[str, Any]]:
    """The HTTP status and OpenAI error object (the value of the body's "error") for `exc`."""
    error_type, code = _OPENAI_OVERRIDES.get((type(exc), exc.param), (exc.mapping.openai_type, exc.code))
    return exc.mapping.http_status, {
        "message": exc.message,
        "type": error_type,
        "param": exc.param,
        "code": exc.reason or code,
    }


class ErrorReply:
    """An error ready to send: status, encoded body and extra headers."""

    __slots__ = ("body", "error", "headers", "status")

    def __init__(self, status: int, error: dict[str, Any], headers: list[tuple[bytes, bytes]]):
        self.status = status
        self.error = error
        self.body = orjson.dumps({"error": error})
        self.headers = headers


def error_reply(exc: AtpError) -> ErrorReply:
    """The complete HTTP reply for `exc`, with Retry-After when the error says when to come back and the
    headers it carries (x-ratelimit-* on a refusal)."""
    status, error = openai_error(exc)
    headers: list[tuple[bytes, bytes]] = []
    if exc.retry_after is not None:
        headers.append((b"retry-after", str(max(1, math.ceil(exc.retry_after))).encode()))
    headers += ((name.encode(), value.encode()) for name, value in exc.headers)
    return ErrorReply(status, error, headers)


def error_from_rpc(exc: grpc.aio.AioRpcError, *, generating: bool = False) -> AtpError:
    """The typed error behind a failed call to another service.

    A NotFound from Generate can only be about the requested model or route, so it names `model` (and
    becomes OpenAI's 404 model_not_found) even when the adapters did not set the param.
    """
    if not any(key == ERROR_CLASS_KEY for key, _ in exc.trailing_metadata() or ()):
        return _transport_error(exc)
    error = from_rpc_error(exc)
    if generating and isinstance(error, NotFound) and error.param is None:
        error.param = "model"
    if type(error) is Internal:
        # Never pass another service's internals through; its own logs have the details.
        error.message = "internal error"
    return error


def _transport_error(exc: grpc.aio.AioRpcError) -> AtpError:
    """A failure gRPC itself reported (no service raised it): a connection refused, a call cut by a server's
    stop, a deadline, a frame too large. Its text names addresses and library internals, so it goes to the
    log (with the request id) and the caller gets what it needs: whether and when to retry."""
    code = exc.code()
    log.warning("call failed in transport: %s %s", code.name, exc.details())
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return DeadlineExceeded("The request did not complete within its deadline.")
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
        # CANCELLED here is the server's doing (its stop cut the call at the end of a drain): the gateway's
        # own cancellations happen only when its client has gone, and nobody reads that reply.
        return Unavailable("The service is temporarily unavailable; retry shortly.", retry_after=1.0)
    return Internal("internal error")


def error_from_generate(code: str, message: str, error_type: str) -> AtpError:
    """The typed error of a GenerateError (a stream that broke after output)."""
    cls = _CLASSES_BY_CODE_AND_TYPE.get((code, error_type)) or _CLASSES_BY_CODE.get(code, Internal)
    return cls(message or code.lower())


# Pydantic puts the union member it tried into the location; it is not part of the request's shape.
_TYPE_TAGS = frozenset(("str", "int", "float", "bool", "dict", "list", "none", "literal"))


def check_complete_reply(reply: adapters_pb2.GenerateResponse) -> None:
    """Raise what a Complete reply says went wrong: the error the provider broke with after output, or
    Internal (logged) when the reply lacks its header or completion."""
    if reply.HasField("error"):
        raise error_from_generate(reply.error.code, reply.error.message, reply.error.type)
    if not reply.HasField("header"):
        log.error("adapters reply without a header")
        raise Internal("internal error")
    if not reply.HasField("completion"):
        log.error("adapters reply ended without a completion")
        raise Internal("The reply ended unexpectedly.")


def _param(loc: tuple[int | str, ...], body: Any = None) -> str | None:
    """The JSON path of an error's location. Pydantic puts union members' tags and type names into the
    location; with the body at hand, only the keys the body has (or a last key it lacks) are kept."""
    parts: list[str] = []
    node = body
    for index, item in enumerate(loc):
        if isinstance(item, int):
            parts.append(f"[{item}]")
            node = node[item] if isinstance(node, list) and item < len(node) else None
        elif body is not None and isinstance(node, dict) and item in node:
            parts.append(("." if parts else "") + item)
            node = node[item]
        elif (body is None or index == len(loc) - 1) and item.isidentifier() and item not in _TYPE_TAGS:
            # A key the body lacks (missing or unknown) can only be the last; before that it is a tag.
            parts.append(("." if parts else "") + item)
    return "".join(parts) or None


def _depth(error: Any) -> tuple[int, bool]:
    return len(error["loc"]), not error["type"].endswith("_type")


def error_from_validation(exc: ValidationError, body: Any = None) -> InvalidArgument:
    """A 400 that names the first offending parameter, in OpenAI's wording where OpenAI has one. With
    the parsed `body`, the path leaves out the tags of discriminated unions."""
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    # An unknown parameter is the clearer message when a request has several faults; otherwise the
    # deepest fault (a union tried as a string first also reports where its other branch failed), and of
    # equally deep ones a branch whose type matched but whose value did not (10 stop sequences are a list
    # too long, not a string that is not one).
    # A wrong part type or role explains the rest (the other keys of a part of another type), so it
    # comes first.
    first = next(
        (e for e in errors if e["type"] == "literal_error" and e["loc"] and e["loc"][-1] in ("type", "role")),
        None,
    ) or next((e for e in errors if e["type"] == "extra_forbidden"), max(errors, key=_depth))
    kind = first["type"]
    param = _param(tuple(first["loc"]), body)
    if kind == "json_invalid":
        return InvalidArgument(
            "We could not parse the JSON body of your request. The body must be a JSON object."
        )
    if kind in ("model_type", "dict_type", "model_attributes_type") and param is None:
        return InvalidArgument("The request body must be a JSON object.")
    if kind == "extra_forbidden":
        return InvalidArgument(f"Unrecognized request argument supplied: {param}", param=param)
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        # A discriminated union: the message names the key it reads the tag from.
        found = re.search(r"using (?:discriminator )?'(\w+)'", first["msg"])
        key = found.group(1) if found else "type"
        param = f"{param}.{key}" if param else key
        if kind == "union_tag_not_found":
            return InvalidArgument(f"Missing required parameter: '{param}'.", param=param)
        expected = first["msg"].rpartition("expected tags: ")[2]
        return InvalidArgument(f"Invalid value for '{param}': expected one of {expected}.", param=param)
    if kind == "missing":
        return InvalidArgument(f"Missing required parameter: '{param}'.", param=param)
    return InvalidArgument(f"Invalid value for '{param}': {first['msg']}.", param=param)


# Routing names a feature by its first parameter; a request that set another of the feature's parameters
# instead reads that one (a client that sent only frequency_penalty must not be told presence_penalty).
_SET_INSTEAD: dict[str, Callable[[chat_pb2.GenerationParams], str]] = {
    "presence_penalty": lambda p: "" if p.presence_penalty else "frequency_penalty",
    "web_search_options": lambda p: (
        next((k for k in sorted(p.openai_options) if k != "web_search_options"), "")
        if "web_search_options" not in p.openai_options
        else ""
    ),
}


def param_as_sent(exc: AtpError, params: chat_pb2.GenerationParams) -> AtpError:
    """`exc` with each parameter it names that the request did not set replaced by its sibling it did."""
    if exc.param:
        names = exc.param.split(", ")
        sent = [(_SET_INSTEAD[n](params) if n in _SET_INSTEAD else "") or n for n in names]
        exc.param = ", ".join(sent)
    return exc
