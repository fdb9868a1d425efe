"""Routing metrics: baselines, and RouteLLM's CPT and APGR, and the cost saved at a quality target.

Definitions (RouteLLM, Ong et al. 2025, section 5.1), for a strong and a weak model:
- PGR(r) = (acc(r) - acc(weak)) / (acc(strong) - acc(weak)): the share of the quality gap a router recovers.
- A router's cost-quality curve is PGR against the share of calls sent to the strong model, taken over a
  sweep of its cost knob, with the two single-model routers as end points (0, 0) and (1, 1), and joined
  piecewise linearly (mixing two routers at random realises any point between them).
- CPT(x%) = the least strong-call share at which that curve reaches PGR x% (first crossing).
- APGR = the area under that curve over strong-call shares 0..1 (trapezoids).
The cost saved at a target accuracy is measured in dollars, not calls: 1 - cost / cost(strong alone), at
the cheapest point of the (cost, accuracy) curve that reaches the target.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from atp_router.evaluation.dataset import Dataset, Prompt


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one routing policy earned over a dataset."""

    accuracy: float
    cost_usd: float
    strong_share: float
    shares: dict[str, float]

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return asdict(self)


def outcome(dataset: Dataset, choices: Sequence[str], strong: str) -> Outcome:
    """Accuracy (mean quality), cost and call shares of routing prompt i to choices[i]."""
    n = len(choices)
    if n != len(dataset.prompts):
        raise ValueError(f"{n} choices for {len(dataset.prompts)} prompts")
    quality = sum(p.quality[m] for p, m in zip(dataset.prompts, choices, strict=True))
    cost = sum(dataset.cost(p, m) for p, m in zip(dataset.prompts, choices, strict=True))
    shares = {m: sum(1 for c in choices if c == m) / n for m in dataset.models}
    return Outcome(quality / n, cost, shares[strong], shares)


def baselines(dataset: Dataset, strong: str) -> dict[str, Outcome]:
    """Each single model, uniform random (its expected value) and the per-prompt oracle (best quality,
    the cheaper model on ties)."""
    prompts = dataset.prompts
    n = len(prompts)
    result = {m: outcome(dataset, [m] * n, strong) for m in dataset.models}
    k = len(dataset.models)
    result["random"] = Outcome(
        sum(r.accuracy for r in result.values()) / k,
        sum(r.cost_usd for r in result.values()) / k,
        1.0 / k,
        dict.fromkeys(dataset.models, 1.0 / k),
    )
    oracle = [_best(dataset, p) for p in prompts]
    result["oracle"] = outcome(dataset, oracle, strong)
    return result


def _best(dataset: Dataset, prompt: Prompt) -> str:
    """The model with the best quality on `prompt`, the cheaper one on ties."""
    return max(dataset.models, key=lambda m: (prompt.quality[m], -dataset.cost(prompt, m)))


def pgr(accuracy: float, weak_accuracy: float, strong_accuracy: float) -> float:
    """Performance gap recovered: 0 at the weak model's accuracy, 1 at the strong model's."""
    gap = strong_accuracy - weak_accuracy
    if gap <= 0:
        raise ValueError("the strong model must be more accurate than the weak one")
    return (accuracy - weak_accuracy) / gap


def _polyline(
    points: Sequence[tuple[float, float]], start: tuple[float, float], end: tuple[float, float]
) -> list[tuple[float, float]]:
    return sorted({start, end, *points})


def _first_crossing(line: Sequence[tuple[float, float]], target: float) -> float | None:
    """The least x at which the piecewise-linear `line` (sorted by x) reaches y >= target."""
    previous: tuple[float, float] | None = None
    for x, y in line:
        if y >= target:
            if previous is None or previous[1] >= target:
                return x
            px, py = previous
            return px + (target - py) * (x - px) / (y - py)
        previous = (x, y)
    return None


def cpt(
    points: Sequence[tuple[float, float]], weak_accuracy: float, strong_accuracy: float, fraction: float
) -> float:
    """CPT(fraction): least strong-call share reaching PGR `fraction`; points are (strong share, accuracy)."""
    line = _polyline([(s, pgr(a, weak_accuracy, strong_accuracy)) for s, a in points], (0.0, 0.0), (1.0, 1.0))
    crossing = _first_crossing(line, fraction)
    if crossing is None:  # fraction above 1: the strong model alone is the only point of PGR 1
        raise ValueError(f"no point reaches PGR {fraction}")
    return crossing


def apgr(points: Sequence[tuple[float, float]], weak_accuracy: float, strong_accuracy: float) -> float:
    """Average PGR over strong-call shares 0..1; points are (strong share, accuracy)."""
    line = _polyline([(s, pgr(a, weak_accuracy, strong_accuracy)) for s, a in points], (0.0, 0.0), (1.0, 1.0))
    # Several points at one share: the curve is a function of share, so keep the best one there.
    best: dict[float, float] = {}
    for x, y in line:
        best[x] = max(y, best.get(x, y))
    xs = sorted(best)
    return sum((xs[i + 1] - xs[i]) * (best[xs[i]] + best[xs[i + 1]]) / 2 for i in range(len(xs) - 1))


def cost_at_accuracy(
    points: Sequence[tuple[float, float]],
    target: float,
    weak: tuple[float, float],
    strong: tuple[float, float],
) -> float | None:
    """Least cost at which the (cost, accuracy) curve through `points` and both single models reaches
    `target` (linear between neighbouring points); None when even the best point falls short."""
    return _first_crossing(_polyline(points, weak, strong), target)


def cost_saved(cost: float | None, strong_cost: float) -> float | None:
    """1 - cost / cost of the strong model alone (None stays None)."""
    return None if cost is None else 1.0 - cost / strong_cost
