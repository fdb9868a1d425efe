"""What a provider's error reply says: Retry-After in its three spellings and the message of each API's
error body (OpenAI, Anthropic, Gemini's list, plain text)."""

from __future__ import annotations

import email.utils
import time

import pytest

from atp_adapters.providers._errors import error_message, parse_retry_after


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "soon", "retry-after": "2"}, 2.0),
        ({"retry-after": "-3"}, 0.0),
        ({"retry-after": "next week"}, None),
        ({}, None),
    ],
)
def test_retry_after_in_seconds_or_milliseconds(headers: dict[str, str], seconds: float | None) -> None:
    assert parse_retry_after(headers) == seconds


def test_retry_after_as_an_http_date() -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    wait = parse_retry_after({"retry-after": when})
    assert wait is not None and 25 <= wait <= 31
    past = email.utils.formatdate(time.time() - 30, usegmt=True)
    assert parse_retry_after({"retry-after": past}) == 0.0


@pytest.mark.parametrize(
    ("body", "message", "param"),
    [
        (
            b'{"error": {"message": "bad temperature", "param": "temperature"}}',
            "bad temperature",
            "temperature",
        ),
        (b'{"type": "error", "error": {"type": "overloaded_error"}}', "overloaded_error", None),
        (
            b'[{"error": {"code": 400, "message": "Invalid JSON payload", "status": "INVALID_ARGUMENT"}}]',
            "Invalid JSON payload",
            None,
        ),
        (b'{"error": "quota exhausted"}', "quota exhausted", None),
        (b'{"message": "no such model"}', "no such model", None),
        (b"upstream connect error", "upstream connect error", None),
        (b"   ", "no error body", None),
        (b"42", "42", None),
    ],
)
def test_the_providers_own_message_from_any_error_body(body: bytes, message: str, param: str | None) -> None:
    assert error_message(body) == (message, param)
