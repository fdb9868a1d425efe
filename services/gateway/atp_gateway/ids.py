"""Checks on identifiers and times a client sends, made before any call carries them to another service."""

from __future__ import annotations

import re

from atp_common.errors import InvalidArgument

__all__ = ["ID_PATTERN", "MAX_ID_LENGTH", "check_id", "check_seconds", "check_time_range"]

# ATP's own ids are 32 hex digits; key ids, tenants and request ids from other systems are wider, but none
# needs more than this, and each travels in gRPC metadata and error messages.
MAX_ID_LENGTH = 128
_ID_BODY = r"[A-Za-z0-9][A-Za-z0-9._:@-]*"
# Anchored for JSON Schema and pydantic; Python's `$` would also match before a final newline.
ID_PATTERN = f"^{_ID_BODY}$"
_ID = re.compile(_ID_BODY)
# google.protobuf.Timestamp's range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
_MIN_SECONDS = -62_135_596_800
_MAX_SECONDS = 253_402_300_799


def check_id(value: str, param: str) -> str:
    """`value` when it is a well-formed id (1 to 128 of letters, digits and `._:@-`), else a 400 naming
    `param` (the value itself is not echoed: it may be anything)."""
    if not value or len(value) > MAX_ID_LENGTH or _ID.fullmatch(value) is None:
        raise InvalidArgument(
            f"{param} must be 1 to {MAX_ID_LENGTH} letters, digits or ._:@- (starting with a letter or digit)",
            param=param,
        )
    return value


def check_seconds(value: int, param: str) -> int:
    """`value` when it is a time in seconds since the epoch within years 1 to 9999, else a 400."""
    if not _MIN_SECONDS <= value <= _MAX_SECONDS:
        raise InvalidArgument(
            f"{param} must be seconds since the epoch between {_MIN_SECONDS} and {_MAX_SECONDS}", param=param
        )
    return value


def check_time_range(start: int | None, end: int | None) -> None:
    """Both ends in range and in order (a 400 naming the one at fault)."""
    if start is not None:
        check_seconds(start, "start")
    if end is not None:
        check_seconds(end, "end")
    if start is not None and end is not None and start > end:
        raise InvalidArgument("start must not be after end", param="start")
