"""What the adapters refuse before any routing work: roles, and the ranges of the parameters OpenAI bounds."""

from __future__ import annotations

from atp.adapters.v1 import adapters_pb2
from atp.common.v1 import chat_pb2
from atp_common import capabilities
from atp_common.errors import InvalidArgument

_ROLES = frozenset(("system", "developer", "user", "assistant", "tool"))


def validate(request: adapters_pb2.GenerateRequest) -> None:
    """Refuse requests no provider could serve, before any routing work."""
    if not request.messages:
        raise InvalidArgument("messages must not be empty", param="messages")
    for index, message in enumerate(request.messages):
        if message.role not in _ROLES:
            raise InvalidArgument(
                f"messages[{index}].role must be one of {sorted(_ROLES)}, not {message.role!r}",
                param=f"messages[{index}].role",
            )
    params = request.params
    if params.HasField("max_tokens") and params.max_tokens < 1:
        raise InvalidArgument("max_tokens must be at least 1", param="max_tokens")
    if params.HasField("temperature") and not 0.0 <= params.temperature <= 2.0:
        raise InvalidArgument("temperature must be between 0 and 2", param="temperature")
    if params.HasField("top_p") and not 0.0 <= params.top_p <= 1.0:
        raise InvalidArgument("top_p must be between 0 and 1", param="top_p")


# The features whose parameters have ranges OpenAI enforces; plain requests never need these checks.
RANGED = capabilities.BY_NAME["multiple_choices"].bit | capabilities.BY_NAME["logprobs"].bit
RANGED |= capabilities.BY_NAME["logit_bias"].bit
MAX_CHOICES = 128
MAX_TOP_LOGPROBS = 20


def validate_ranges(params: chat_pb2.GenerationParams) -> None:
    """The ranges of n, top_logprobs and logit_bias, checked where the request asks for them."""
    if params.HasField("n") and not 1 <= params.n <= MAX_CHOICES:
        raise InvalidArgument(f"n must be between 1 and {MAX_CHOICES}", param="n")
    if params.HasField("top_logprobs") and not 0 <= params.top_logprobs <= MAX_TOP_LOGPROBS:
        raise InvalidArgument(f"top_logprobs must be between 0 and {MAX_TOP_LOGPROBS}", param="top_logprobs")
    for token, bias in params.logit_bias.items():
        if not token.isdigit() or not -100 <= bias <= 100:
            raise InvalidArgument(
                f"logit_bias maps token ids to a bias between -100 and 100, not {token!r}: {bias}",
                param=f"logit_bias.{token}",
            )
