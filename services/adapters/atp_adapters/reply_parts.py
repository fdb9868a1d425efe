"""What the pipeline reads off a provider's reply: output size, visible output, and reply metadata."""

from __future__ import annotations

from collections.abc import Sequence

from atp.adapters.v1 import adapters_pb2
from atp.common.v1 import chat_pb2
from atp_adapters.providers import ProviderBatch

__all__ = ["count_output_chars", "is_output", "reply_metadata"]


def count_output_chars(deltas: Sequence[chat_pb2.Delta]) -> int:
    """Characters of output in `deltas`, for the usage estimate when the provider reports none."""
    chars = 0
    for delta in deltas:
        chars += len(delta.content)
        for tool_call in delta.tool_calls:
            chars += len(tool_call.function_name) + len(tool_call.arguments)
        if delta.refusal or delta.reasoning or delta.HasField("audio"):
            chars += len(delta.refusal) + len(delta.reasoning) + len(delta.audio.transcript)
    return chars


def is_output(delta: chat_pb2.Delta) -> bool:
    """Whether a delta is output a client sees (a role-only opening is not: failover is still possible)."""
    return bool(
        delta.content
        or delta.tool_calls
        or delta.refusal
        or delta.reasoning
        or delta.reasoning_signature
        or delta.redacted_reasoning
        or delta.HasField("audio")
    )


def reply_metadata(header: adapters_pb2.GenerateHeader, batch: ProviderBatch) -> None:
    """What the provider said about the reply (its id, fingerprint or model version, tier) in the header."""
    header.provider_response_id = batch.response_id
    header.system_fingerprint = batch.model_version
    header.service_tier = batch.service_tier
