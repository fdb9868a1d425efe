"""The cost of a reply: provider-reported usage times the model's configured prices."""

from __future__ import annotations

from dataclasses import dataclass

from atp.common.v1 import chat_pb2
from atp_common.config import ModelConfig

_PER_TOKEN = 1e-6  # prices are configured per million tokens


@dataclass(frozen=True, slots=True)
class Prices:
    """USD per token (not per million), precomputed once per model.

    cost = (prompt - cached - written) * input + cached * cached_input + written * cache_write
           + (completion - reasoning) * output + reasoning * reasoning_price

    Cached tokens (read from the provider's prompt cache) and written tokens (stored into it, Anthropic's
    cache_creation_input_tokens) are part of the prompt tokens (OpenAI's `prompt_tokens_details.cached_tokens`,
    Anthropic's cache reads, Gemini's `cachedContentTokenCount` are all reported inside or added to the
    prompt count by the providers' translation), billed at the cached and cache-write prices instead of the
    input price.
    Reasoning tokens are part of the completion tokens, billed at the reasoning price. A model without a
    cached, cache-write (reasoning) price bills those tokens at the input (output) price. Counts are clamped
    so a provider that reports more cached or written than prompt tokens cannot make a cost negative.
    """

    input: float
    cached_input: float
    cache_write: float
    output: float
    reasoning: float

    @classmethod
    def of(cls, model: ModelConfig) -> Prices:
        """The per-token prices of one configured model."""
        cached = model.cached_input_usd_per_mtok
        written = model.cache_write_usd_per_mtok
        reasoning = model.reasoning_usd_per_mtok
        return cls(
            input=model.input_usd_per_mtok * _PER_TOKEN,
            cached_input=(model.input_usd_per_mtok if cached is None else cached) * _PER_TOKEN,
            cache_write=(model.input_usd_per_mtok if written is None else written) * _PER_TOKEN,
            output=model.output_usd_per_mtok * _PER_TOKEN,
            reasoning=(model.output_usd_per_mtok if reasoning is None else reasoning) * _PER_TOKEN,
        )

    def cost(self, usage: chat_pb2.Usage) -> float:
        """USD for `usage`."""
        prompt = max(usage.prompt_tokens, 0)
        cached = min(max(usage.cached_prompt_tokens, 0), prompt)
        written = min(max(usage.cache_write_tokens, 0), prompt - cached)
        completion = max(usage.completion_tokens, 0)
        reasoning = min(max(usage.reasoning_tokens, 0), completion)
        return (
            (prompt - cached - written) * self.input
            + cached * self.cached_input
            + written * self.cache_write
            + (completion - reasoning) * self.output
            + reasoning * self.reasoning
        )
