"""Errors of the Responses dialect: OpenAI's shape, with internal parameter paths named as the body has them."""

from __future__ import annotations

from atp_common.errors import AtpError
from atp_gateway.dialects.json_fields import rename_error
from atp_gateway.errors import ErrorReply, error_reply

__all__ = ["RENAMES", "responses_error_reply"]

# Internal (Chat Completions) parameter names that routing and providers name in their refusals, as the
# Responses body spells them.
RENAMES = {
    "messages": "input",
    "max_tokens": "max_output_tokens",
    "max_completion_tokens": "max_output_tokens",
    "reasoning_effort": "reasoning.effort",
    "response_format": "text.format",
    "verbosity": "text.verbosity",
    "logprobs": "include",
}


def responses_error_reply(exc: AtpError) -> ErrorReply:
    """OpenAI's error reply for `exc`, its param the path in the Responses body."""
    return error_reply(rename_error(exc, RENAMES))
