"""What a provider's error reply says: Retry-After in its three spellings, the message of each API's
error body (OpenAI, Anthropic, Gemini's list, plain text), and a prompt too long however it is said."""

from __future__ import annotations

import email.utils
import time

import pytest

from atp_adapters.providers._errors import error_message, parse_retry_after
from atp_adapters.providers.base import http_error
from atp_common.errors import CONTEXT_LENGTH_EXCEEDED, InvalidArgument, PayloadTooLarge, RateLimited


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
    assert error_message(body)[:2] == (message, param)


def test_openais_error_code_is_read_and_gemini_numeric_code_is_not() -> None:
    body = b'{"error": {"message": "too long", "type": "invalid_request_error", "code": "string_above_max_length"}}'
    assert error_message(body)[2] == "string_above_max_length"
    assert (
        error_message(b'{"error": {"code": 400, "message": "bad", "status": "INVALID_ARGUMENT"}}')[2] is None
    )


@pytest.mark.parametrize(
    ("status", "message", "code"),
    [
        (400, "This model's maximum context length is 128000 tokens. However, you requested 130000", None),
        (400, "Input tokens exceed the configured limit", "context_length_exceeded"),
        (400, "prompt is too long: 208721 tokens > 200000 maximum", None),
        (400, "input length and `max_tokens` exceed context limit: 188240 + 21333 > 200000", None),
        (400, "Input is too long for requested model.", None),
        (
            400,
            "The input token count (1048577) exceeds the maximum number of tokens allowed (1048576).",
            None,
        ),
        (413, "Too many tokens in the prompt", None),
    ],
)
def test_a_prompt_too_long_is_context_length_exceeded_whoever_says_it(
    status: int, message: str, code: str | None
) -> None:
    error = http_error("p", status, message, None)
    error.code = code
    atp = error.to_atp()
    assert isinstance(atp, (InvalidArgument, PayloadTooLarge))
    assert (atp.reason, atp.param) == (CONTEXT_LENGTH_EXCEEDED, "messages")


def test_a_request_faults_own_code_reaches_the_caller_and_other_faults_keep_theirs() -> None:
    error = http_error("p", 400, "Invalid 'messages[0].content': string too long.", None)
    error.code, error.param = "string_above_max_length", "messages[0].content"
    atp = error.to_atp()
    assert (atp.reason, atp.param) == ("string_above_max_length", "messages[0].content")
    # A provider's 429 is about ATP's own account: the class says what the caller needs.
    limited = http_error("p", 429, "Rate limit reached for requests", 1.0)
    limited.code = "rate_limit_exceeded"
    assert isinstance(limited.to_atp(), RateLimited) and limited.to_atp().reason is None
    assert http_error("p", 400, "temperature must be at most 2", None).to_atp().reason is None
