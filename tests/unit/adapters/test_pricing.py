"""The cost of a reply from its usage: each kind of token at its own configured price."""

from __future__ import annotations

import pytest

from atp.common.v1 import chat_pb2
from atp_adapters.pricing import Prices
from atp_common.config import ModelConfig


def test_cached_written_and_reasoning_tokens_each_have_their_price() -> None:
    # Anthropic-like prices per million tokens: input 3, cache read 0.3, cache write 3.75, output 15.
    prices = Prices.of(
        ModelConfig(
            provider="p",
            input_usd_per_mtok=3.0,
            cached_input_usd_per_mtok=0.3,
            cache_write_usd_per_mtok=3.75,
            output_usd_per_mtok=15.0,
            reasoning_usd_per_mtok=20.0,
        )
    )
    usage = chat_pb2.Usage(
        prompt_tokens=10_000,
        cached_prompt_tokens=6_000,
        cache_write_tokens=3_000,
        completion_tokens=500,
        reasoning_tokens=200,
    )
    expected = (1_000 * 3.0 + 6_000 * 0.3 + 3_000 * 3.75 + 300 * 15.0 + 200 * 20.0) / 1e6
    assert prices.cost(usage) == pytest.approx(expected, abs=1e-15)


def test_without_special_prices_every_prompt_token_costs_the_input_price() -> None:
    prices = Prices.of(ModelConfig(provider="p", input_usd_per_mtok=2.0, output_usd_per_mtok=8.0))
    usage = chat_pb2.Usage(
        prompt_tokens=1_000, cached_prompt_tokens=400, cache_write_tokens=300, completion_tokens=100
    )
    assert prices.cost(usage) == pytest.approx((1_000 * 2.0 + 100 * 8.0) / 1e6, abs=1e-15)


def test_counts_beyond_the_prompt_cannot_make_a_cost_negative() -> None:
    prices = Prices.of(ModelConfig(provider="p", input_usd_per_mtok=1.0, cache_write_usd_per_mtok=0.0))
    usage = chat_pb2.Usage(prompt_tokens=100, cached_prompt_tokens=80, cache_write_tokens=500)
    # 80 read from the cache (at the input price: no cached price configured), at most 20 written (free).
    assert prices.cost(usage) == pytest.approx(80 * 1.0 / 1e6, abs=1e-15)
