"""Decisions that price each request at its known cost, with a quality floor, and epsilon-mixed exploration."""

from __future__ import annotations

import random
from collections.abc import Sequence


def rank_known_cost(
    upper: Sequence[float], costs: Sequence[float], cost_weight: float, floor: float
) -> tuple[list[int], list[float], str]:
    """Order candidates by predicted quality (upper bound) minus cost_weight x known cost.

    With a floor in (0, 1], the cheapest candidate whose predicted quality reaches floor x the best one's
    goes first, the rest follow by score. Returns (order, scores in that order, why).
    """
    scores = [q - cost_weight * c for q, c in zip(upper, costs, strict=True)]
    order = sorted(range(len(scores)), key=scores.__getitem__, reverse=True)
    why = f"quality {upper[order[0]]:.3f} - {cost_weight:g} x ${costs[order[0]]:.6f}"
    if floor > 0.0:
        best = max(upper)
        bar = floor * best if best > 0 else best
        meeting = [i for i in range(len(upper)) if upper[i] >= bar]
        first = min(meeting, key=lambda i: (costs[i], -upper[i]))
        if first != order[0]:
            order.remove(first)
            order.insert(0, first)
        why = f"cheapest at {floor:g} of the best predicted quality {best:.3f}: ${costs[first]:.6f}"
    return order, [scores[i] for i in order], why


def epsilon_mix(n: int, epsilon: float, rng: random.Random) -> tuple[int, float]:
    """(index to put first, its propensity), the greedy choice being index 0.

    With probability epsilon a uniformly drawn candidate goes first, so the chosen one's propensity is
    (1 - epsilon) [greedy] + epsilon / n: known exactly, never below epsilon / n.
    """
    share = epsilon / n
    pick = rng.randrange(n) if rng.random() < epsilon else 0
    return pick, (1.0 - epsilon + share) if pick == 0 else share
