"""Prints what semantic routing features cost per request (p50, one core), against compute_features alone."""

from __future__ import annotations

import os
import random
import statistics
import string
import time
from collections.abc import Callable

from atp.common.v1 import chat_pb2
from atp_common.policy import compute_features
from atp_common.policy.artifact import default_semantic
from atp_common.policy.semantic import encoder_for

ROUNDS = 2000
PROMPT_BYTES = 4096


def _prompt(rng: random.Random, words: list[str]) -> str:
    text = ""
    while len(text) < PROMPT_BYTES:
        text += rng.choice(words) + " "
    return text[:PROMPT_BYTES]


def _p50_us(call: Callable[[], object], rounds: int = ROUNDS) -> float:
    timings = []
    for _ in range(rounds):
        started = time.perf_counter_ns()
        call()
        timings.append(time.perf_counter_ns() - started)
    return statistics.median(timings) / 1000.0


def main() -> None:
    """Time compute_features and the semantic encoder on 4 KB prompts, on one core."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    rng = random.Random(1)
    vocabulary = [
        "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(2, 9))) for _ in range(3000)
    ]
    system = chat_pb2.ChatMessage(role="system", content="You are a careful assistant. Answer briefly.")
    messages = [system, chat_pb2.ChatMessage(role="user", content=_prompt(rng, vocabulary))]
    params = chat_pb2.GenerationParams()
    started = time.perf_counter()
    projection = default_semantic().projection_proto()
    assert projection is not None
    encoder = encoder_for(projection)
    load_ms = (time.perf_counter() - started) * 1000.0
    encoder.encode(messages)  # the words of this prompt are now cached, as a steady vocabulary would be
    base = _p50_us(lambda: compute_features(messages, params, False))
    semantic = _p50_us(lambda: encoder.encode(messages))
    fresh = [
        [system, chat_pb2.ChatMessage(role="user", content=_prompt(rng, vocabulary))] for _ in range(200)
    ]
    cold = iter(fresh)
    first_sight = _p50_us(lambda: encoder.encode(next(cold)), rounds=len(fresh))
    print(f"model load + projection compile (once per process)  {load_ms:9.1f} ms")
    print(f"compute_features, 4 KB prompt                     {base:9.2f} us p50")
    print(
        f"semantic features, 4 KB prompt (budget 150 us)   {semantic:9.2f} us p50  ({semantic / base:.1f}x)"
    )
    print(f"semantic features, fresh 4 KB prompts (cache filling){first_sight:9.2f} us p50")


if __name__ == "__main__":
    main()
