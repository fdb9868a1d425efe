"""Small pure-Python numerics the kernel and the learner share: priors, Beta posteriors on a grid, inverses."""

from __future__ import annotations

import math
from collections.abc import Sequence

# Beta prior of an arm that has no data: a uniform Beta(1, 1) plus PRIOR_PSEUDO_COUNT observations at the
# model's configured quality prior, so the prior leans toward it without drowning the first real rewards.
PRIOR_PSEUDO_COUNT = 2.0
# Ridge of the contextual (LinUCB) regression: A starts as RIDGE * I, so an untrained arm's a_inv is I / RIDGE.
RIDGE = 1.0
# A score for arms that UCB has never pulled: above any real score so each is tried once, prior breaks ties.
UNTRIED_SCORE = 1.0e6
# Completion length assumed for cost estimates when the request sets no max_tokens.
DEFAULT_OUTPUT_TOKENS = 256

# Thompson prices an arm without measured cost at this request size, so that its draw distribution (and so
# the propensity) is fixed per snapshot and can be cached.
REFERENCE_PROMPT_TOKENS = 1000


def beta_prior(quality_prior: float) -> tuple[float, float]:
    """The (alpha, beta) prior of an arm whose model has this configured quality prior."""
    p = min(max(quality_prior, 0.0), 1.0)
    return 1.0 + PRIOR_PSEUDO_COUNT * p, 1.0 + PRIOR_PSEUDO_COUNT * (1.0 - p)


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


class BetaGrid:
    """A Beta distribution discretised for integration: 512 equal cells over mean +/- 8 sd within [0, 1].

    Cell masses come from the density at cell midpoints, renormalised; the CDF is linear within a cell.
    """

    __slots__ = ("cdf", "cells", "lo", "masses", "mids", "step")

    def __init__(self, alpha: float, beta: float, cells: int = 512):
        total = alpha + beta
        mean = alpha / total
        sd = math.sqrt(alpha * beta / (total * total * (total + 1.0)))
        lo, hi = max(0.0, mean - 8.0 * sd), min(1.0, mean + 8.0 * sd)
        step = (hi - lo) / cells
        log_norm = math.lgamma(total) - math.lgamma(alpha) - math.lgamma(beta)
        mids = [lo + (k + 0.5) * step for k in range(cells)]
        logs = [(alpha - 1.0) * math.log(x) + (beta - 1.0) * math.log1p(-x) + log_norm for x in mids]
        peak = max(logs)
        weights = [math.exp(v - peak) for v in logs]
        norm = math.fsum(weights)
        self.cells = cells
        self.lo = lo
        self.step = step
        self.mids = mids
        self.masses = [w / norm for w in weights]
        cdf = [0.0]
        running = 0.0
        for m in self.masses:
            running += m
            cdf.append(running)
        cdf[-1] = 1.0
        self.cdf = cdf

    def cdf_at(self, x: float) -> float:
        """P(X <= x)."""
        u = (x - self.lo) / self.step if self.step > 0 else (math.inf if x >= self.lo else -math.inf)
        if u <= 0.0:
            return 0.0
        if u >= self.cells:
            return 1.0
        k = int(u)
        low = self.cdf[k]
        return low + (u - k) * (self.cdf[k + 1] - low)


def beta_win_probability(index: int, grids: Sequence[BetaGrid], shifts: Sequence[float]) -> float:
    """P(X_index - shifts[index] > X_j - shifts[j] for every other j), X_k independent Betas on `grids`.

    Exact up to the grids' discretisation (well under 0.005 here); costs about 512 * (K - 1) CDF lookups,
    so callers cache it.
    """
    grid = grids[index]
    others = [(grids[j], shifts[j] - shifts[index]) for j in range(len(grids)) if j != index]
    if not others:
        return 1.0
    total = 0.0
    for x, mass in zip(grid.mids, grid.masses, strict=True):
        if mass < 1e-15:
            continue
        p = mass
        for other, offset in others:
            p *= other.cdf_at(x + offset)
            if p == 0.0:
                break
        total += p
    return min(max(total, 0.0), 1.0)
