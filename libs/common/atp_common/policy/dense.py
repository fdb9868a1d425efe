"""LinUCB upper bounds for dense context vectors (semantic features), in numpy: O(d^2) in C, not Python."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def upper_bounds(arms: Sequence[Any], vector: Sequence[float], dim: int, alpha: float) -> list[float]:
    """theta . x + alpha sqrt(x^T A^-1 x) per arm; each arm's matrices are converted once per snapshot."""
    x = np.zeros(dim)
    values = np.asarray(vector[:dim], dtype=np.float64)
    x[: len(values)] = values
    scores = []
    for arm in arms:
        if arm.dense is None:
            arm.dense = (np.array(arm.a_inv, dtype=np.float64), np.array(arm.theta, dtype=np.float64))
        a_inv, theta = arm.dense
        variance = float(x @ a_inv @ x)
        scores.append(float(theta @ x) + alpha * (variance if variance > 0 else 0.0) ** 0.5)
    return scores
