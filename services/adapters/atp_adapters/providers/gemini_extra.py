"""The fields of a Gemini reply that ATP's typed reply has no place for, kept for chat clients as sent."""

from __future__ import annotations

from typing import Any

import orjson

from atp_adapters.providers.openai_extra import StreamExtras, unknown
from atp_common.replies import OPENAI_EXTRA_FIELD as EXTRA_FIELD

__all__ = ["GeminiExtras"]

# What the typed reply holds. Everything else Gemini sends (promptFeedback's safety ratings, a candidate's
# safetyRatings, avgLogprobs, groundingMetadata and urlContextMetadata, the output's usage by modality,
# Vertex AI's trafficType, and whatever Gemini adds) travels as it came, under Gemini's own names.
_REPLY = frozenset(("candidates", "usageMetadata", "modelVersion", "responseId"))
_CANDIDATE = frozenset(("content", "finishReason", "index", "logprobsResult", "citationMetadata"))
_USAGE = frozenset(
    (
        "promptTokenCount",
        "candidatesTokenCount",
        "totalTokenCount",
        "cachedContentTokenCount",
        "thoughtsTokenCount",
        "promptTokensDetails",
    )
)


class GeminiExtras(StreamExtras):
    """A reply's unknown fields, the latest value of each: at the top, in usageMetadata and per candidate
    (a stream's chunks each carry their own; its last values stand)."""

    __slots__ = ("candidates",)

    def __init__(self) -> None:
        super().__init__()
        self.candidates: dict[str, dict[str, Any]] = {}

    def add(self, payload: dict[str, Any]) -> None:
        if not payload.keys() <= _REPLY:
            self.reply.update(unknown(payload, _REPLY))
        usage = payload.get("usageMetadata")
        if isinstance(usage, dict) and not usage.keys() <= _USAGE:
            self.usage.update(unknown(usage, _USAGE))

    def candidate(self, index: int, candidate: dict[str, Any], filtered: bool) -> None:
        """A candidate's unknown fields; its finishMessage is the refusal when the candidate was filtered."""
        known = _CANDIDATE | {"finishMessage"} if filtered else _CANDIDATE
        if not candidate.keys() <= known:
            self.candidates.setdefault(str(index), {}).update(unknown(candidate, known))

    def field(self, whole: bool = True) -> dict[str, bytes] | None:
        """The provider field, or None when Gemini sent nothing beyond the typed reply. A stream's chat
        chunks have no place for a choice's own fields, so only a whole reply carries them."""
        extras = self.extras()
        if whole and self.candidates:
            extras["choices"] = {index: {"choice": own} for index, own in self.candidates.items()}
        return {EXTRA_FIELD: orjson.dumps(extras)} if extras else None
