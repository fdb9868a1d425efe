"""Small pure-Python numerics the kernel and the learner share (priors, Gaussian tails, matrix inverse)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

# Beta prior of an arm that has no data: a uniform Beta(1, 1) plus PRIOR_PSEUDO_COUNT observations at the
# model's configured quality prior, so the prior leans toward it without drowning the first real rewards.
PRIOR_PSEUDO_COUNT = 2.0
# Ridge of the contextual (LinUCB) regression: A starts as RIDGE * I, so an untrained arm's a_inv is I / RIDGE.
RIDGE = 1.0
# A score for arms that UCB has never pulled: above any real score so each is tried once, prior breaks ties.
UNTRIED_SCORE = 1.0e6
# Completion length assumed for cost estimates when the request sets no max_tokens.
DEFAULT_OUTPUT_TOKENS = 256

_SQRT1_2 = math.sqrt(0.5)
# Standard-normal quantiles at the midpoints of 48 equal-probability bins: a midpoint rule in probability
# space for E[f(Z)], robust when f is a near-step (a much more certain competitor), unlike Gauss-Hermite.
_QUANTILE_NODES = tuple(NormalDist().inv_cdf((i + 0.5) / 48) for i in range(48))


def beta_prior(quality_prior: float) -> tuple[float, float]:
    """The (alpha, beta) prior of an arm whose model has this configured quality prior."""
    p = min(max(quality_prior, 0.0), 1.0)
    return 1.0 + PRIOR_PSEUDO_COUNT * p, 1.0 + PRIOR_PSEUDO_COUNT * (1.0 - p)


def normal_cdf(z: float) -> float:
    """Standard normal CDF."""
    return 0.5 * math.erfc(-z * _SQRT1_2)


def gaussian_win_probability(index: int, means: Sequence[float], stds: Sequence[float]) -> float:
    """P(X_index > X_j for every other j) for independent Gaussians X_k ~ N(means[k], stds[k]^2).

    Two arms: the exact closed form. More: E over X_index of the product of the others' CDFs, by a
    48-node midpoint rule in X_index's probability space (error well under 0.01 for routing-sized inputs).
    """
    mu, sd = means[index], stds[index]
    others = [(means[j], stds[j]) for j in range(len(means)) if j != index]
    if not others:
        return 1.0
    if len(others) == 1:
        mu_j, sd_j = others[0]
        spread = math.sqrt(sd * sd + sd_j * sd_j)
        if spread <= 0.0:
            return 1.0 if mu > mu_j else (0.5 if mu == mu_j else 0.0)
        return normal_cdf((mu - mu_j) / spread)
    # Each other CDF as erfc(-(a x + c)) / 2, folded once so the 48-node loop makes only C calls.
    folded = []
    for mu_j, sd_j in others:
        if sd_j <= 0.0:
            sd_j = 1e-12
        a = _SQRT1_2 / sd_j
        folded.append((-a, a * mu_j))
    erfc = math.erfc
    scale = 0.5 ** len(folded)
    total = 0.0
    for z in _QUANTILE_NODES:
        x = mu + sd * z
        p = scale
        for a, c in folded:
            p *= erfc(a * x + c)
        total += p
    return total / len(_QUANTILE_NODES)


def invert(matrix: Sequence[float], dim: int) -> list[float]:
    """Inverse of a row-major dim x dim matrix by Gauss-Jordan with partial pivoting.

    Used only off the request path (decay restoring the ridge, exports); raises ValueError if singular.
    """
    rows = [
        [*matrix[i * dim : (i + 1) * dim], *(1.0 if j == i else 0.0 for j in range(dim))] for i in range(dim)
    ]
    for col in range(dim):
        pivot = max(range(col, dim), key=lambda r: abs(rows[r][col]))
        if abs(rows[pivot][col]) < 1e-300:
            raise ValueError("matrix is singular")
        rows[col], rows[pivot] = rows[pivot], rows[col]
        head = rows[col]
        scale = 1.0 / head[col]
        for k in range(2 * dim):
            head[k] *= scale
        for r in range(dim):
            if r != col:
                row = rows[r]
                factor = row[col]
                if factor != 0.0:
                    for k in range(col, 2 * dim):
                        row[k] -= factor * head[k]
    return [value for row in rows for value in row[dim:]]


def mat_vec(matrix: Sequence[float], vector: Sequence[float], dim: int) -> list[float]:
    """Row-major matrix times vector."""
    return [math.fsum(matrix[i * dim + j] * vector[j] for j in range(dim)) for i in range(dim)]
